import { Transform, type TransformCallback } from 'node:stream';
import type { BodyMasker } from './body-masker.js';

/** Options of a MaskingTransform. */
export interface MaskingTransformOptions {
  /** Called once, when the body ended or the stream was destroyed, e.g. to hand the summary to the recorder. */
  readonly onDone?: (complete: boolean) => void;
}

/**
 * A Node Transform around a BodyMasker: every masked piece is pushed as soon as the masker releases
 * it, so nothing is buffered beyond the masker's own hold-back.
 */
export class MaskingTransform extends Transform {
  readonly #masker: BodyMasker;
  readonly #onDone: ((complete: boolean) => void) | undefined;
  #done = false;

  constructor(masker: BodyMasker, options: MaskingTransformOptions = {}) {
    super();
    this.#masker = masker;
    this.#onDone = options.onDone;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#masker.writeAsync !== undefined) {
      this.#masker.writeAsync(chunk).then((out) => {
        this.#pushOut(out);
        callback();
      }, callback);
      return;
    }
    try {
      this.#pushOut(this.#masker.write(chunk));
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.#masker.endAsync !== undefined) {
      this.#masker.endAsync().then((out) => {
        this.#pushOut(out);
        this.#finish(true);
        callback();
      }, callback);
      return;
    }
    try {
      this.#pushOut(this.#masker.end());
      this.#finish(true);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#finish(false);
    callback(error);
  }

  #pushOut(out: string | Buffer): void {
    if (out.length > 0) this.push(typeof out === 'string' ? Buffer.from(out, 'utf8') : out);
  }

  #finish(complete: boolean): void {
    if (this.#done) return;
    this.#done = true;
    this.#onDone?.(complete);
  }
}
