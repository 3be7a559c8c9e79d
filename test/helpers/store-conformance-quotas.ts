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
}
