import type { CompiledProfile } from './compiled-profile.js';
import { MaskingCounter } from './masking-summary.js';
import { SseFramer } from './sse-framer.js';
import { SseMasker } from './sse-masker.js';
import { readShape } from './stream-shapes.js';

/** Where the first streamed text went in and came out of masking, and what masking cost on the way. */
export interface FirstTokenTiming {
  /** Index of the upstream chunk carrying the first non-empty delta. */
  readonly firstIn: number;
  /** Index of the chunk whose write released the first non-empty delta (later than `firstIn` only by the hold-back). */
  readonly firstOut: number;
  /** Nanoseconds spent in the masker from the write of chunk `firstIn` until the first delta was released. */
  readonly maskingNs: number;
  /** Nanoseconds per chunk write, for throughput. */
  readonly writeNs: readonly number[];
}

/**
 * Drives the SSE masker over `chunks` as the gateway does (no buffering beyond the masker's hold-back)
 * and times the first token, for `bench/`; null when no chunk carries text. The clock is injectable so a
 * benchmark can use its own.
 */
export function firstTokenTiming(
  profile: CompiledProfile,
  chunks: readonly Buffer[],
  clock: () => bigint = process.hrtime.bigint,
): FirstTokenTiming | null {
  const masker = new SseMasker(profile, new MaskingCounter());
  const inFramer = new SseFramer({ maxEvent: profile.maxJsonBody, maxLine: profile.maxLine });
  const outFramer = new SseFramer({ maxEvent: Number.MAX_SAFE_INTEGER, maxLine: Number.MAX_SAFE_INTEGER });
  const writeNs: number[] = [];
  let firstIn = -1;
  let firstOut = -1;
  let maskingNs = 0;
  chunks.forEach((chunk, i) => {
    if (firstIn === -1 && carriesText(inFramer, chunk.toString('utf8'))) firstIn = i;
    const t0 = clock();
    const out = masker.write(chunk);
    const ns = Number(clock() - t0);
    writeNs.push(ns);
    if (firstIn !== -1 && firstOut === -1) maskingNs += ns;
    if (firstOut === -1 && carriesText(outFramer, out)) firstOut = i;
  });
  masker.end();
  return firstIn === -1 || firstOut === -1 ? null : { firstIn, firstOut, maskingNs, writeNs };
}

function carriesText(framer: SseFramer, text: string): boolean {
  for (const ev of framer.push(text)) {
    if (ev.data === undefined || ev.data === '[DONE]') continue;
    try {
      if (readShape(JSON.parse(ev.data)).slots.some((s) => s.text !== '')) return true;
    } catch {
      // Not JSON: not a delta.
    }
  }
  return false;
}
