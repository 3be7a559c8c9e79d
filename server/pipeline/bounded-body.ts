import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { SluiceError } from '../../shared/errors.js';

/** Whether a request carries a body (RFC 9112 6.3: chunked, or a non-zero Content-Length). */
export function hasRequestBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Holds a chunk until it may go upstream: resolves once its record is durable, rejects when it cannot
 * be recorded. (The recorder's `BodyTap.upRecorded`.)
 */
export type ChunkGate = (chunk: Buffer) => Promise<void>;

/**
 * The caller's bytes as the upstream reads them (an HTTP request body, a TCP stream's bytes), counted
 * against a limit (the connection's `max_body`), each chunk let through only once its gate (the recording)
 * has passed it: no byte reaches the upstream unrecorded.
 *
 * undici destroys a body stream it stops reading; handed the IncomingMessage itself, that would
 * destroy the caller's socket before the gateway could answer 413 or 502. This wrapper takes the
 * destruction instead, and backpressure still reaches the caller: the source is paused while a chunk
 * waits for its gate and whenever the reader's buffer is full, and resumed when it reads again.
 */
export class BoundedBody extends Readable {
  /** Bytes of the request body seen so far. */
  bytes = 0;
  readonly #req: Readable;
  readonly #limit: number;
  readonly #gate: ChunkGate | undefined;
  /** A chunk is waiting for its gate; the request stays paused until it has been pushed. */
  #gating = false;
  /** The request ended while a chunk waited: the end follows that chunk. */
  #endAfterGate = false;
  readonly #onData = (chunk: Buffer): void => {
    this.bytes += chunk.length;
    if (this.bytes > this.#limit) {
      this.#detach();
      this.destroy(
        new SluiceError('ERR_BODY_TOO_LARGE', {
          message: `The request body exceeds the limit of ${this.#limit} bytes of this connection`,
          details: { limit: this.#limit },
        }),
      );
      return;
    }
    if (this.#gate === undefined) {
      if (!this.push(chunk)) this.#req.pause();
      return;
    }
    this.#req.pause();
    this.#gating = true;
    this.#gate(chunk).then(
      () => {
        this.#gating = false;
        if (this.destroyed) return;
        const more = this.push(chunk);
        if (this.#endAfterGate) this.push(null);
        else if (more) this.#req.resume();
      },
      (err: unknown) => {
        this.#gating = false;
        this.#detach();
        this.destroy(err as Error);
      },
    );
  };
  readonly #onEnd = (): void => {
    this.#detach();
    if (this.#gating) this.#endAfterGate = true;
    else this.push(null);
  };
  readonly #onAborted = (): void => {
    this.#detach();
    this.destroy(new Error('The caller aborted the request body'));
  };

  /** `req` is the source (an IncomingMessage emits 'aborted' too); `limit` may be Infinity. */
  constructor(req: Readable, limit: number, gate?: ChunkGate) {
    super({ highWaterMark: 64 * 1024 });
    this.#req = req;
    this.#limit = limit;
    this.#gate = gate;
    req.on('data', this.#onData);
    req.on('end', this.#onEnd);
    req.on('error', this.#onAborted);
    req.on('aborted', this.#onAborted);
    // Adding a 'data' listener set the request flowing; it must wait until undici asks for data.
    req.pause();
  }

  override _read(): void {
    if (!this.#gating) this.#req.resume();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.#detach();
    cb(err);
  }

  #detach(): void {
    const req = this.#req;
    req.off('data', this.#onData);
    req.off('end', this.#onEnd);
    req.off('error', this.#onAborted);
    req.off('aborted', this.#onAborted);
  }
}
