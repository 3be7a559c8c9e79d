/**
 * The quota part of the Store conformance suite: windowed counters taken atomically (a race at the limit
 * lets exactly the limit through, across two replicas' connections), usage added, windows forgotten.
 */
import { describe, expect, it } from 'vitest';
import type { QuotaTake } from '../../server/store/store.js';
import type { OpenStores } from './store-conformance.js';

const MINUTE = 60_000;
const W0 = 1_700_000_000_000 - (1_700_000_000_000 % MINUTE);

function take(fields: Partial<QuotaTake> = {}): QuotaTake {
  return { key: 'rpm|user:alice', window: W0, expiresAt: W0 + MINUTE, limit: 3, add: 1, ...fields };
}

export function describeQuotaConformance(openStores: OpenStores): void {
  describe('quota counters', () => {
    it('takes while every counter fits, then refuses naming the first that does not, adding nothing', async () => {
      const { store } = await openStores();
      for (let i = 0; i < 3; i++) expect(await store.takeQuotas([take()], W0)).toBeUndefined();
      const other = take({ key: 'rpm|user:bob' });
      expect(await store.takeQuotas([other, take()], W0)).toBe(1);
      expect(await store.quotaCount('rpm|user:alice', W0)).toBe(3);
      // the refused take added nothing to the counter that fitted
      expect(await store.quotaCount('rpm|user:bob', W0)).toBe(0);
      // the next window counts from zero
      expect(await store.takeQuotas([take({ window: W0 + MINUTE, expiresAt: W0 + 2 * MINUTE })], W0 + MINUTE)).toBeUndefined();
      expect(await store.quotaCount('rpm|user:alice', W0 + MINUTE)).toBe(1);
    });

    it('checks a budget with a take of 0 and counts usage added after the answer; forgets expired windows', async () => {
      const { store } = await openStores();
      const budget = take({ key: 'tokens-day|user:alice', limit: 100, add: 0 });
      expect(await store.takeQuotas([budget], W0)).toBeUndefined();
      expect(await store.quotaCount(budget.key, W0)).toBe(0);
      await store.addQuotaUsage([{ key: budget.key, window: W0, expiresAt: W0 + MINUTE, amount: 60 }]);
      await store.addQuotaUsage([{ key: budget.key, window: W0, expiresAt: W0 + MINUTE, amount: 39 }]);
      expect(await store.quotaCount(budget.key, W0)).toBe(99);
      expect(await store.takeQuotas([budget], W0)).toBeUndefined();
      await store.addQuotaUsage([{ key: budget.key, window: W0, expiresAt: W0 + MINUTE, amount: 1 }]);
      expect(await store.takeQuotas([budget], W0)).toBe(0);
      // once its window is over, a counter is gone
      await store.takeQuotas([take({ key: budget.key, window: W0 + MINUTE, expiresAt: W0 + 2 * MINUTE, limit: 100, add: 0 })], W0 + MINUTE);
      expect(await store.quotaCount(budget.key, W0)).toBe(0);
    });

    it('lets exactly the limit through when takes race at it across two replicas', async () => {
      const { store, peer } = await openStores();
      const limit = 10;
      const results = await Promise.all(Array.from({ length: 24 }, (_, i) => (i % 2 === 0 ? store : peer).takeQuotas([take({ limit }), take({ key: 'rpm|all', limit: 100 })], W0)));
      expect(results.filter((r) => r === undefined)).toHaveLength(limit);
      expect(results.filter((r) => r === 0)).toHaveLength(24 - limit);
      expect(await store.quotaCount('rpm|user:alice', W0)).toBe(limit);
      expect(await peer.quotaCount('rpm|all', W0)).toBe(limit);
    });
  });

  describe('quota slots', () => {
    it('takes a slot under every key or none, counting every replica; gives slots back', async () => {
      const { store, peer } = await openStores();
      const alice = { key: 'streams|user:alice', limit: 2 };
      const all = { key: 'streams|all', limit: 10 };
      const first = await store.acquireQuotaSlots([alice, all], 'r1');
      const second = await peer.acquireQuotaSlots([alice, all], 'r2');
      expect(first).toHaveLength(2);
      expect(second).toHaveLength(2);
      // alice holds her two (one per replica): the next names her key and takes nothing under the other
      expect(await store.acquireQuotaSlots([all, alice], 'r1')).toBe(1);
      expect(await store.acquireQuotaSlots([{ ...all, limit: 2 }], 'r1')).toBe(0);
      await peer.releaseQuotaSlots(first as string[]);
      // released, and releasing again is a no-op
      await store.releaseQuotaSlots(first as string[]);
      expect(await store.acquireQuotaSlots([alice], 'r1')).toHaveLength(1);
      expect(await store.acquireQuotaSlots([alice], 'r1')).toBe(0);
    });

    it('lets exactly the limit through when takes race across two replicas; a dead replica\'s slots are cleared with its tunnels\'', async () => {
      const { store, peer } = await openStores();
      const limit = 5;
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? store : peer).acquireQuotaSlots([{ key: 'streams|group:ml', limit }], i % 2 === 0 ? 'r1' : 'r2')),
      );
      expect(results.filter((r) => Array.isArray(r))).toHaveLength(limit);
      expect(results.filter((r) => r === 0)).toHaveLength(16 - limit);
      const onR1 = results.filter((r, i) => Array.isArray(r) && i % 2 === 0).length;
      expect(await store.replicasWithOpenState()).toEqual(onR1 === limit ? ['r1'] : onR1 === 0 ? ['r2'] : ['r1', 'r2']);
      // the sweep of a replica that died frees its calls' slots
      expect(await peer.clearTunnelSlots('r1')).toBe(onR1);
      expect(await store.acquireQuotaSlots(Array.from({ length: onR1 }, () => ({ key: 'streams|group:ml', limit })), 'r2')).toHaveLength(onR1);
      expect(await store.acquireQuotaSlots([{ key: 'streams|group:ml', limit }], 'r2')).toBe(0);
    });
  });
}
