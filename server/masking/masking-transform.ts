import { Transform, type TransformCallback } from 'node:stream';
import { outputBytes, type BodyMasker } from './body-masker.js';

/**
 * A Node Transform around a BodyMasker: every masked piece is pushed as soon as the masker releases
 * it, so nothing is buffered beyond the masker's own hold-back.
 */
export class MaskingTransform extends Transform {
  readonly #masker: BodyMasker;

  constructor(masker: BodyMasker) {
    super();
    this.#masker = masker;
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
        callback();
      }, callback);
      return;
    }
    try {
      this.#pushOut(this.#masker.end());
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  #pushOut(out: string | Buffer): void {
    if (out.length > 0) this.push(outputBytes(out));
  }
}
