/**
 * Two in-memory stand-ins for `ws` WebSockets, wired back to back, for fuzzing TunnelMux without sockets:
 * what one end sends arrives at the other on a later turn of the event loop, in order, and a close arrives
 * after every message sent before it. The server end's outgoing binary frames can be diverted by stream id
 * (`divert`), so frames for streams the fuzzer made up reach the fuzzer and not the real client mux.
 */
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';

const OPEN = 1;
const CLOSED = 3;

type Delivery = { kind: 'message'; data: Buffer; isBinary: boolean } | { kind: 'close'; code: number; reason: string };

/** One end: the subset of a `ws` WebSocket TunnelMux uses. */
export class FakeWebSocket extends EventEmitter {
  readyState = OPEN;
  bufferedAmount = 0;
  binaryType = 'nodebuffer';
  /** The close code and reason this end saw, once closed. */
  closed: { code: number; reason: string } | undefined;
  /** Outgoing binary frames for which this returns true go here instead of to the peer. */
  divert: ((frame: Buffer) => boolean) | undefined;
  peer!: FakeWebSocket;
  readonly #queue: Delivery[] = [];
  #scheduled = false;

  send(data: Buffer | string, options: { binary: boolean }, cb?: (err?: Error) => void): void {
    if (this.readyState !== OPEN) {
      cb?.(new Error('WebSocket is not open'));
      return;
    }
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    if (!(options.binary && this.divert?.(bytes))) this.peer.#enqueue({ kind: 'message', data: bytes, isBinary: options.binary });
    if (cb) queueMicrotask(() => cb());
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState !== OPEN) return;
    this.readyState = CLOSED;
    this.peer.readyState = CLOSED;
    this.#enqueue({ kind: 'close', code, reason });
    this.peer.#enqueue({ kind: 'close', code, reason });
  }

  terminate(): void {
    this.close(1006);
  }

  /** Delivers a message to this end now, as if the peer had sent it (the fuzzer's injection). */
  inject(data: Buffer | string, isBinary: boolean): void {
    if (this.readyState !== OPEN) return;
    this.emit('message', typeof data === 'string' ? Buffer.from(data, 'utf8') : data, isBinary);
  }

  #enqueue(item: Delivery): void {
    this.#queue.push(item);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      for (const next of this.#queue.splice(0)) {
        if (next.kind === 'close') {
          if (this.closed) continue;
          this.closed = { code: next.code, reason: next.reason };
          this.emit('close', next.code, Buffer.from(next.reason));
        } else if (!this.closed) {
          this.emit('message', next.data, next.isBinary);
        }
      }
    });
  }
}

/** A client end and a server end, connected; typed as `ws` WebSockets for TunnelMux. */
export function fakeWebSocketPair(): { client: FakeWebSocket; server: FakeWebSocket; asWs: (end: FakeWebSocket) => WebSocket } {
  const client = new FakeWebSocket();
  const server = new FakeWebSocket();
  client.peer = server;
  server.peer = client;
  return { client, server, asWs: (end) => end as unknown as WebSocket };
}
