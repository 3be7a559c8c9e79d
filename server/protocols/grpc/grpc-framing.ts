import { Transform, type TransformCallback } from 'node:stream';
import { SluiceError } from '../../../shared/errors.js';

/** Bytes before each gRPC message: a compressed flag (1 byte) and the length (4 bytes, big-endian). */
export const FRAME_PREFIX = 5;

/** One gRPC message as it travels: its prefix and its payload, in one buffer. */
export interface GrpcFrame {
  /** The whole frame, prefix included: forwarded as it came. */
  readonly frame: Buffer;
  readonly compressed: boolean;
  /** The message bytes after the prefix (compressed when `compressed`). */
  readonly payload: Buffer;
}

/** Reads a frame (prefix included) as its parts. */
export function frameParts(frame: Buffer): GrpcFrame {
  return { frame, compressed: frame[0] === 1, payload: frame.subarray(FRAME_PREFIX) };
}

/** One message framed for the wire, uncompressed. */
export function encodeFrame(payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_PREFIX + payload.length);
  frame[0] = 0;
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, FRAME_PREFIX);
  return frame;
}

/**
 * Cuts a byte stream of gRPC messages into whole frames, one per chunk it emits (object mode, so a
 * reader never sees two glued together): policy, recording and masking then work on messages, and the
 * bytes still go on exactly as they came. A message longer than `maxMessage` fails the stream before it is
 * buffered, so memory per call stays bounded; so does a flag other than 0 or 1.
 */
export class GrpcFrameSplitter extends Transform {
  /** Bytes buffered towards the next frame. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  readonly #maxMessage: number;
  readonly #what: string;

  /** `what` names the stream in errors: "request" or "response". */
  constructor(maxMessage: number, what: string) {
    // Two frames ahead is enough to keep a reader busy; more would only buffer what backpressure should hold.
    super({ readableObjectMode: true, readableHighWaterMark: 2 });
    this.#maxMessage = maxMessage;
    this.#what = what;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    for (;;) {
      if (this.#pendingBytes < FRAME_PREFIX) break;
      const head = this.#peek(FRAME_PREFIX);
      const flag = head[0]!;
      const length = head.readUInt32BE(1);
      if (flag > 1) {
        callback(new SluiceError('ERR_BAD_REQUEST', { message: `A gRPC ${this.#what} message has an invalid compressed flag (${flag})` }));
        return;
      }
      if (length > this.#maxMessage) {
        callback(
          new SluiceError('ERR_BODY_TOO_LARGE', {
            message: `A gRPC ${this.#what} message (${length} bytes) exceeds the limit of ${this.#maxMessage} bytes`,
            details: { limit: this.#maxMessage },
          }),
        );
        return;
      }
      if (this.#pendingBytes < FRAME_PREFIX + length) break;
      this.push(this.#take(FRAME_PREFIX + length));
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.#pendingBytes > 0) {
      callback(new SluiceError('ERR_BAD_REQUEST', { message: `The gRPC ${this.#what} stream ended inside a message (${this.#pendingBytes} bytes left over)` }));
      return;
    }
    callback();
  }

  #peek(n: number): Buffer {
    if (this.#pending[0]!.length < n) this.#pending = [Buffer.concat(this.#pending)];
    return this.#pending[0]!.subarray(0, n);
  }

  #take(n: number): Buffer {
    const all = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    const frame = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#pending = rest.length === 0 ? [] : [rest];
    this.#pendingBytes = rest.length;
    // A copy only when the frame shares its buffer with what follows, so a kept frame pins no more memory.
    return rest.length === 0 ? frame : Buffer.from(frame);
  }
}
