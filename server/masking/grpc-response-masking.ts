import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { SluiceError } from '../../shared/errors.js';
import { decodeContentEncoding } from '../codec/content-decoding.js';
import type { GrpcMethod } from '../protocols/grpc/grpc-descriptors.js';
import { encodeFrame, frameParts } from '../protocols/grpc/grpc-framing.js';
import type { CompiledProfile } from './compiled-profile.js';
import { GrpcMessageMasker } from './grpc-message-masker.js';
import type { MaskingCounter } from './masking-summary.js';

/** What masking one gRPC response needs to know besides its profile. */
export interface GrpcResponseMaskingOptions {
  /** The call's method as the descriptors define it; undefined for one they do not (its messages cannot be masked). */
  readonly method: GrpcMethod | undefined;
  /** The response head: its `grpc-encoding` says how compressed messages are compressed. */
  readonly headers: IncomingHttpHeaders;
  /** Largest message, decompressed: the connection's `max_message`. */
  readonly maxMessage: number;
  readonly counter: MaskingCounter;
}

/**
 * The masking of a gRPC response as a Transform of whole frames (object mode: one frame in, one or more
 * out, never two glued together, since the recorder keeps one record per frame). Compressed messages are
 * decompressed (bounded by `max_message`) to be masked and sent uncompressed, with the flag cleared, which
 * the protocol allows whatever `grpc-encoding` the head named. A server-streamed response may end with
 * extra messages carrying the text its hold-back kept.
 */
export function grpcMaskingTransform(profile: CompiledProfile, o: GrpcResponseMaskingOptions): Transform {
  const method = o.method;
  const masker =
    method === undefined ? null : new GrpcMessageMasker({ type: method.responseType, profile, counter: o.counter, streamed: method.responseStream });
  return new GrpcMaskingTransform(masker, o);
}

class GrpcMaskingTransform extends Transform {
  readonly #masker: GrpcMessageMasker | null;
  readonly #o: GrpcResponseMaskingOptions;

  constructor(masker: GrpcMessageMasker | null, o: GrpcResponseMaskingOptions) {
    super({ readableObjectMode: true, writableObjectMode: true, readableHighWaterMark: 2, writableHighWaterMark: 2 });
    this.#masker = masker;
    this.#o = o;
  }

  override _transform(frame: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#message(frame).then((out) => callback(null, out), callback);
  }

  override _flush(callback: TransformCallback): void {
    try {
      for (const message of this.#masker?.end() ?? []) this.push(encodeFrame(message));
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  async #message(frame: Buffer): Promise<Buffer> {
    if (this.#masker === null) {
      throw new SluiceError('ERR_MASKING_BLOCKED', { message: "A gRPC message cannot be masked: its method is not in the connection's descriptors" });
    }
    const parts = frameParts(frame);
    let payload = parts.payload;
    if (parts.compressed) {
      const encoding = this.#o.headers['grpc-encoding'];
      const named = Array.isArray(encoding) ? encoding.join(',') : encoding;
      if (named === undefined || named === 'identity') {
        throw new SluiceError('ERR_MASKING_BLOCKED', { message: 'A gRPC message is flagged compressed, but the response names no grpc-encoding' });
      }
      const decoded = await decodeContentEncoding(payload, named, { maxOutput: this.#o.maxMessage, maxCodings: 1 });
      if ('tooLarge' in decoded) {
        throw new SluiceError('ERR_MASKING_BLOCKED', { message: `A compressed gRPC message is larger than ${this.#o.maxMessage} bytes once decompressed` });
      }
      if ('error' in decoded) throw new SluiceError('ERR_MASKING_BLOCKED', { message: `A compressed gRPC message cannot be decompressed: ${decoded.error}` });
      payload = decoded.bytes;
    }
    return encodeFrame(this.#masker.mask(payload));
  }
}
