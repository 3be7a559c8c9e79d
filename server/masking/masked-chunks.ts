import type { BodyChunks } from '../pipeline/masking-stage.js';
import { outputBytes, type BodyMasker } from './body-masker.js';

/** A body masker with synchronous forms only: no call of it is cut into slices. */
export type SynchronousBodyMasker = BodyMasker & { readonly writeAsync?: undefined; readonly endAsync?: undefined };

/** Whether `masker` has no sliced forms, so it can be driven chunk by chunk (MaskedChunks). */
export function isSynchronous(masker: BodyMasker): masker is SynchronousBodyMasker {
  return masker.writeAsync === undefined && masker.endAsync === undefined;
}

/**
 * A synchronous body masker driven chunk by chunk with no stream around it (see BodyChunks): a stream's
 * masker (SSE, NDJSON) or a bare credential search, whose work per call is bounded by the chunk and its
 * hold-back. A masker with sliced forms is typed out: its long calls belong behind a Transform.
 */
export class MaskedChunks implements BodyChunks {
  readonly #masker: SynchronousBodyMasker;

  constructor(masker: SynchronousBodyMasker) {
    this.#masker = masker;
  }

  write(chunk: Buffer): Buffer {
    return outputBytes(this.#masker.write(chunk));
  }

  end(): Buffer {
    return outputBytes(this.#masker.end());
  }
}
