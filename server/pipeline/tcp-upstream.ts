import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { SluiceError } from '../../shared/errors.js';
import type { TcpConnectionConfig } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import { BoundedBody } from './bounded-body.js';
import type { Upstream, UpstreamCall, UpstreamCallOptions } from './upstream.js';

/** Splits `tcp://host:port` into what `net.connect` takes. */
export function tcpTargetOf(upstream: string): { host: string; port: number } {
  const url = new URL(upstream);
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port) };
}

/** Resets a socket: a TCP RST, so the peer never mistakes a failure for a clean end. */
export function resetStream(stream: Readable, err: Error): void {
  if (stream.destroyed) return;
  const socket = stream as Partial<Socket>;
  if (typeof socket.resetAndDestroy === 'function' && (socket as Socket).readyState !== 'opening') socket.resetAndDestroy();
  else stream.destroy(err);
}

/** A TCP exchange's failure on either side (the caller's stream or the upstream socket), named for its connection. */
export function streamFailure(connection: string, err: Error): SluiceError {
  return new SluiceError('ERR_UPSTREAM_UNAVAILABLE', { message: `The stream of connection "${connection}" failed (${err.message})`, details: { connection }, cause: err });
}

/** Reaches TCP upstreams: one socket per exchange, half-close carried both ways. */
export function createTcpUpstream(): Upstream {
  const open = new Set<Socket>();
  return {
    call(o) {
      return new TcpUpstreamCall(o, open);
    },
    async close() {
      for (const socket of open) socket.destroy();
      open.clear();
    },
  };
}

/** One TCP connection to the upstream: the caller's bytes in, the upstream's out as response frames. */
class TcpUpstreamCall implements UpstreamCall {
  readonly #socket: Socket;
  readonly #body: Readable | null;
  readonly #timer: NodeJS.Timeout;

  constructor(o: UpstreamCallOptions, open: Set<Socket>) {
    const connection = o.exchange.connection as TcpConnectionConfig;
    const name = connection.name;
    const target = tcpTargetOf(connection.upstream);
    // Half-close travels both ways: the end of one direction must not end the other.
    const socket = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    this.#socket = socket;
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    this.#timer = setTimeout(() => {
      socket.destroy(new SluiceError('ERR_UPSTREAM_TIMEOUT', { message: `The upstream of connection "${name}" did not accept the connection in time`, details: { connection: name } }));
    }, parseDuration(connection.connect_timeout));
    socket.once('connect', () => clearTimeout(this.#timer));
    const fail = (err: Error): void => {
      clearTimeout(this.#timer);
      o.fail(err instanceof SluiceError ? err : streamFailure(name, err));
    };
    socket.on('error', fail);

    const body = Buffer.isBuffer(o.body) ? null : o.body;
    this.#body = body;
    if (body === null) {
      socket.end();
      o.requestEnded();
    } else {
      body.on('error', fail);
      body.once('end', o.requestEnded);
      body.pipe(socket);
    }
    o.frames.resumeWith(() => socket.resume());
    socket.on('data', (chunk: Buffer) => {
      if (!o.frames.data(chunk)) socket.pause();
    });
    socket.once('end', () => o.frames.end());
  }

  get requestBytes(): number {
    return this.#socket.bytesWritten;
  }

  abort(reason: Error): void {
    clearTimeout(this.#timer);
    // A failure on either side resets the other; nothing half-delivered may look like a clean close.
    resetStream(this.#socket, reason);
    if (this.#body instanceof BoundedBody) this.#body.destroy();
  }
}
