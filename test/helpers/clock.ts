import type { Clock } from '../../server/clock.js';
import { MAX_TIMER_MS, type TimedCall } from '../../shared/timers.js';

/** A clock a test moves forward: the gateway's token deadlines pass when the test says, not after a wait. */
export interface TestClock extends Clock {
  /** Moves the clock `ms` forward; calls that fall due run before it returns. */
  advance(ms: number): void;
}

interface PendingCall {
  due: number;
  fn: () => void;
  timer?: NodeJS.Timeout;
}

/**
 * Real time plus an offset that only grows. It keeps running between `advance` calls, so whatever the
 * gateway times by it still happens in order; a pending call is rechecked each time the offset moves.
 */
export function testClock(): TestClock {
  let offset = 0;
  const now = (): number => Date.now() + offset;
  const pending = new Set<PendingCall>();
  const arm = (call: PendingCall): void => {
    clearTimeout(call.timer);
    const wait = call.due - now();
    if (wait <= 0) {
      pending.delete(call);
      call.fn();
      return;
    }
    call.timer = setTimeout(() => arm(call), Math.min(wait, MAX_TIMER_MS));
    call.timer.unref();
  };
  return {
    now,
    at(epochMs, fn): TimedCall {
      const call: PendingCall = { due: epochMs, fn };
      pending.add(call);
      arm(call);
      return {
        cancel: () => {
          clearTimeout(call.timer);
          pending.delete(call);
        },
      };
    },
    advance(ms) {
      offset += ms;
      // A call that falls due may cancel another one: only those still pending are rechecked.
      for (const call of [...pending]) if (pending.has(call)) arm(call);
    },
  };
}
