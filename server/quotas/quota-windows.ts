/** A counting window: where it starts and where it ends (ms since the epoch). */
export interface QuotaWindow {
  readonly start: number;
  readonly end: number;
}

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** The minute `now` falls in. */
export function minuteWindow(now: number): QuotaWindow {
  const start = now - (now % MINUTE);
  return { start, end: start + MINUTE };
}

/** The UTC day `now` falls in: every replica, whatever its time zone, counts the same day. */
export function dayWindow(now: number): QuotaWindow {
  const start = now - (now % DAY);
  return { start, end: start + DAY };
}

/** The UTC calendar month `now` falls in. */
export function monthWindow(now: number): QuotaWindow {
  const d = new Date(now);
  return { start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}
