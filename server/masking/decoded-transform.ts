import { pipeline, Transform, type Duplex, type TransformCallback } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { SluiceError } from '../../shared/errors.js';

/** Content-Encodings masking can decode. */
export type SupportedEncoding = 'gzip' | 'deflate' | 'br';

/** The body's encoding, `identity` when none, or null when masking cannot read it (zstd, compress, a chain). */
export function bodyEncoding(header: string | string[] | undefined): SupportedEncoding | 'identity' | null {
  if (header === undefined) return 'identity';
  const value = (Array.isArray(header) ? header.join(',') : header).trim().toLowerCase();
  if (value === '' || value === 'identity') return 'identity';
  if (value === 'gzip' || value === 'x-gzip') return 'gzip';
  if (value === 'deflate') return 'deflate';
  if (value === 'br') return 'br';
  return null;
}

/** A decompressor for `encoding`. */
export function decoderFor(encoding: SupportedEncoding): Duplex {
  if (encoding === 'gzip') return createGunzip();
  if (encoding === 'deflate') return createInflate();
  return createBrotliDecompress();
}

/** `stage` reading the body decoded: itself for `identity`, else behind a decompressor for `encoding`. */
export function afterDecoding(encoding: SupportedEncoding | 'identity', stage: Transform): Transform {
  return encoding === 'identity' ? stage : new ChainedTransform([decoderFor(encoding), stage]);
}

/**
 * Several streams (decoder, masker) presented as one Transform, with backpressure through
 * the chain: a write is acknowledged once the first stage takes it, and the last stage is paused while
 * this Transform's reader is full.
 */
export class ChainedTransform extends Transform {
  readonly #first: Duplex;
  readonly #last: Duplex;
  #flushed: TransformCallback | null = null;

  constructor(stages: [Duplex, ...Duplex[]]) {
    super();
    this.#first = stages[0];
    this.#last = stages[stages.length - 1]!;
    const onError = (err: Error | null | undefined): void => {
      if (err) this.destroy(decodeError(err));
    };
    if (stages.length > 1) pipeline(stages, onError);
    else this.#first.on('error', onError);
    this.#last.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) this.#last.pause();
    });
    this.#last.on('end', () => this.#flushed?.());
  }

  override _read(size: number): void {
    this.#last.resume();
    super._read(size);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#first.write(chunk)) callback();
    else this.#first.once('drain', () => callback());
  }

  override _flush(callback: TransformCallback): void {
    this.#flushed = callback;
    this.#first.end();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#first.destroy();
    this.#last.destroy();
    callback(error);
  }
}

function decodeError(err: Error): Error {
  if (err instanceof SluiceError) return err;
  // zlib errors carry codes such as Z_DATA_ERROR: a corrupt body cannot be masked, so it is not sent.
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^(Z_|ERR_BROTLI|ERR__?ZLIB)/.test(code)) {
    return new SluiceError('ERR_MASKING_BLOCKED', { message: `The compressed response body cannot be decoded: ${err.message}`, cause: err });
  }
  return err;
}
