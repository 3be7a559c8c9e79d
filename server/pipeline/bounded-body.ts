import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { SluiceError } from '../../shared/errors.js';

/** Whether a request carries a body (RFC 9112 6.3: chunked, or a non-zero Content-Length). */
export function hasRequestBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The request body as undici reads it, counted against the connection's `max_body`.
 *
 * undici destroys a body stream it stops reading; handed the IncomingMessage itself, that would
 * destroy the caller's socket before the gateway could answer 413 or 502. This wrapper takes the
 * destruction instead, and backpressure still reaches the caller: the request is paused whenever
 * undici's buffer is full and resumed when it reads again.
 */
export class BoundedBody extends Readable {
  /** Bytes of the request body seen so far. */
  bytes = 0;
  readonly #req: IncomingMessage;
  readonly #limit: number;
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
    if (!this.push(chunk)) this.#req.pause();
  };
  readonly #onEnd = (): void => {
    this.#detach();
    this.push(null);
  };
  readonly #onAborted = (): void => {
    this.#detach();
    this.destroy(new Error('The caller aborted the request body'));
  };

  constructor(req: IncomingMessage, limit: number) {
    super({ highWaterMark: 64 * 1024 });
    this.#req = req;
    this.#limit = limit;
    req.on('data', this.#onData);
    req.on('end', this.#onEnd);
    req.on('error', this.#onAborted);
    req.on('aborted', this.#onAborted);
    // Adding a 'data' listener set the request flowing; it must wait until undici asks for data.
    req.pause();
  }

  override _read(): void {
    this.#req.resume();
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
