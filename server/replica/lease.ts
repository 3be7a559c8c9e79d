import type { TimedCall } from '../../shared/timers.js';
import { systemClock, type Clock } from '../clock.js';
import type { Store } from '../store/store.js';

/** What a lease needs of the store. */
export type LeaseStore = Pick<Store, 'acquireLease' | 'releaseLease'>;

/** How a run under a lease went: `ran` with fn's value, or not, because another holder has the lease. */
export type LeaseRun<T> = { readonly ran: true; readonly value: T } | { readonly ran: false };

/**
 * Runs `fn` only if `holder` gets the lease `name`, so of replicas running the same periodic work at once
 * exactly one does it. While `fn` runs the lease is renewed every third of `ttlMs`, so a long run keeps it;
 * a holder that dies mid-run loses it `ttlMs` later. When a renewal fails (another holder took the lease,
 * or the store cannot be reached) `signal` aborts: `fn` stops at its next safe point, since someone else
 * may be doing the same work now. The lease is released once `fn` settles.
 */
export async function runUnderLease<T>(
  store: LeaseStore,
  name: string,
  holder: string,
  ttlMs: number,
  fn: (signal: AbortSignal) => Promise<T>,
  clock: Clock = systemClock,
): Promise<LeaseRun<T>> {
  if (!(await store.acquireLease(name, holder, clock.now(), ttlMs))) return { ran: false };
  const lost = new AbortController();
  let done = false;
  let timer: TimedCall | undefined;
  let renewing: Promise<void> = Promise.resolve();
  const renewEvery = Math.max(1, Math.floor(ttlMs / 3));
  const schedule = (): void => {
    timer = clock.at(clock.now() + renewEvery, () => {
      if (done || lost.signal.aborted) return;
      // Timed from this renewal, not from the store's answer: a slow store must not stretch the interval.
      schedule();
      // One renewal at a time, each stamped when it is sent.
      renewing = renewing
        .then(() => store.acquireLease(name, holder, clock.now(), ttlMs))
        .then(
          (kept) => {
            if (!kept) lost.abort(new Error(`the lease "${name}" was taken over by another holder`));
          },
          (err: unknown) => lost.abort(err),
        );
    });
  };
  schedule();
  try {
    return { ran: true, value: await fn(lost.signal) };
  } finally {
    done = true;
    timer?.cancel();
    // A renewal still on its way must land before the release, or it would take the lease again.
    await renewing;
    // A no-op when another holder took it; a release that fails leaves the lease to expire after ttlMs.
    await store.releaseLease(name, holder).catch(() => undefined);
  }
}
