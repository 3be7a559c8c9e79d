import { atTime, type TimedCall } from '../shared/timers.js';

/**
 * The time that token deadlines are measured against: the verifier judges `exp` by `now()`, and a tunnel
 * closes at `at(exp)`. One object so a test can move both forward together instead of waiting for a token
 * to expire.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once `now()` has reached `epochMs`, at once if it already has; `cancel` stops it. */
  at(epochMs: number, fn: () => void): TimedCall;
}

/** The machine's own clock. */
export const systemClock: Clock = { now: () => Date.now(), at: atTime };
