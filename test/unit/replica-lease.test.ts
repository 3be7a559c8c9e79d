import { describe, expect, it, onTestFinished } from 'vitest';
import { runUnderLease } from '../../server/replica/lease.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { testClock } from '../helpers/clock.js';
import { faultyStore } from '../helpers/faulty-store.js';

const TTL = 30_000;

function freshStore(): SqliteStore {
  const store = new SqliteStore({ file: ':memory:' });
  onTestFinished(() => store.close());
  return store;
}

describe('runUnderLease', () => {
  it('runs for the holder only, keeps the lease through a run longer than its ttl, and gives it back after', async () => {
    const store = freshStore();
    const clock = testClock();
    const othersTried: boolean[] = [];
    const run = await runUnderLease(
      store,
      'retention',
      'a/0',
      TTL,
      async (signal) => {
        // Inside the run, others are refused, even two ttls later: the lease was renewed as time went by.
        othersTried.push(await runUnderLease(store, 'retention', 'b/0', TTL, async () => 'b ran', clock).then((r) => r.ran));
        for (let i = 0; i < 6; i++) {
          clock.advance(TTL / 3);
          await new Promise((r) => setImmediate(r));
        }
        othersTried.push(await store.acquireLease('retention', 'b/0', clock.now(), TTL));
        return signal.aborted ? 'lost' : 'a ran';
      },
      clock,
    );
    expect(run).toEqual({ ran: true, value: 'a ran' });
    expect(othersTried).toEqual([false, false]);
    // Released at once, not left to expire.
    expect(await store.acquireLease('retention', 'b/0', clock.now(), TTL)).toBe(true);
  });

  it('tells the run to stop when a renewal fails, and gives the lease back even when the run throws', async () => {
    const store = faultyStore(freshStore());
    const clock = testClock();
    store.arm({ failOn: 'acquireLease', after: 1 });
    const seen = await runUnderLease(
      store,
      'sweeps',
      'a/0',
      TTL,
      async (signal) => {
        clock.advance(TTL / 3);
        await new Promise((r) => setImmediate(r));
        return { aborted: signal.aborted, why: String(signal.reason) };
      },
      clock,
    );
    expect(seen).toEqual({ ran: true, value: { aborted: true, why: expect.stringContaining('injected fault: acquireLease') } });

    // Faults off: armed on a call the lease never makes.
    store.arm({ failOn: 'heartbeat' });
    await expect(runUnderLease(store, 'sweeps', 'a/0', TTL, async () => Promise.reject(new Error('the sweep failed')), clock)).rejects.toThrow('the sweep failed');
    expect(await store.acquireLease('sweeps', 'b/0', clock.now(), TTL)).toBe(true);
  });
});
