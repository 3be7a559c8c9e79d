import { z } from 'zod';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** One pattern for what the schema accepts and what `parseDuration` reads, so the two cannot drift apart. */
const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/**
 * A duration in the configuration: `500ms`, `30s`, `10m`, `2h`, `7d`. A string that is not one stops here
 * (`abort`): a bound refined on top reads it with `parseDuration`, which would throw rather than report.
 */
export const durationSchema = z.string().regex(DURATION, { message: 'must be a duration such as 500ms, 30s, 10m, 2h or 7d', abort: true });

/** Milliseconds of a duration string such as `500ms`, `30s`, `10m`, `2h`, `7d`. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text);
  if (!m) throw new TypeError(`not a duration: ${text}`);
  return Number(m[1]) * UNITS[m[2]!]!;
}
