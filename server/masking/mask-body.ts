import { outputBytes, type BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import { JsonBodyMasker } from './json-body-masker.js';
import { MaskingCounter, type MaskingSummaryEntry } from './masking-summary.js';
import { createBodyMasker } from './response-masking.js';
import { TextBodyMasker } from './text-body-masker.js';

/** Options of `maskBody`. */
export interface MaskBodyOptions {
  readonly profile: CompiledProfile;
  readonly format: 'json' | 'sse' | 'ndjson' | 'text';
  readonly body: Buffer;
}

/** What masking a whole body gives. */
export interface MaskedBody {
  readonly output: Buffer;
  readonly summary: MaskingSummaryEntry[];
}

/** Masks a whole body at once, exactly as a response of that format is masked; for `sluice mask test`. */
export function maskBody(options: MaskBodyOptions): MaskedBody {
  const counter = new MaskingCounter();
  const masker = createBodyMasker(options.format, options.profile, counter);
  return { output: joined([masker.write(options.body), masker.end()]), summary: counter.entries() };
}

/** Options of `maskBodyAsync`. */
export interface MaskBodyAsyncOptions {
  readonly profile: CompiledProfile;
  readonly format: 'json' | 'text';
  readonly body: Buffer;
}

/**
 * Masks a whole JSON or text body as `maskBody` does (token logprobs aside: request bodies carry none),
 * a slice at a time with turns of the event loop between slices, so a large body (a request body kept
 * masked in its recording) never holds the loop however costly its text is to mask.
 */
export async function maskBodyAsync(options: MaskBodyAsyncOptions): Promise<MaskedBody> {
  const counter = new MaskingCounter();
  const masker: Required<BodyMasker> =
    options.format === 'json' ? new JsonBodyMasker(options.profile, counter) : new TextBodyMasker(options.profile, counter);
  const first = await masker.writeAsync(options.body);
  const last = await masker.endAsync();
  return { output: joined([first, last]), summary: counter.entries() };
}

function joined(parts: readonly (string | Buffer)[]): Buffer {
  return Buffer.concat(parts.map((p) => outputBytes(p)));
}
