import type { CompiledProfile } from './compiled-profile.js';
import { MaskingCounter, type MaskingSummaryEntry } from './masking-summary.js';
import { createBodyMasker } from './response-masking.js';

/** Options of `maskBody`. */
export interface MaskBodyOptions {
  readonly profile: CompiledProfile;
  readonly format: 'json' | 'sse' | 'text';
  readonly body: Buffer;
}

/** Masks a whole body at once, exactly as a response of that format is masked; for `sluice mask test`. */
export function maskBody(options: MaskBodyOptions): { output: Buffer; summary: MaskingSummaryEntry[] } {
  const counter = new MaskingCounter();
  const masker = createBodyMasker(options.format, options.profile, counter);
  const parts = [masker.write(options.body), masker.end()].map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p));
  return { output: Buffer.concat(parts), summary: counter.entries() };
}
