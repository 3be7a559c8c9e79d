/**
 * The usage part of the Store conformance suite: spend summed from the session index per user, connection
 * or model, filtered by user, connection and start; each model's share added by progress from any replica.
 */
import { describe, expect, it } from 'vitest';
import type { NewSession } from '../../server/store/store.js';
import type { OpenStores } from './store-conformance.js';

const T0 = 1_750_000_000_000;

function session(n: number, fields: Partial<NewSession>): NewSession {
  return {
    id: `ses_usage${n.toString(16).padStart(27, '0')}`,
    user: 'alice',
    groups: ['ml-eng'],
    connection: 'llm',
    via: 'proxy',
    clientAddress: '127.0.0.1',
    startedAt: T0 + n,
    file: `sessions/2025/06/15/usage_${n}.rec`,
    keyId: 'default',
    replica: 'r1',
    ...fields,
  };
}

export function describeUsageConformance(openStores: OpenStores): void {
  describe('usage', () => {
    it('sums requests and tokens per user, connection and model; filters by user, connection and start', async () => {
      const { store, peer } = await openStores();
      const a = session(1, {});
      const b = session(2, { connection: 'triton' });
      const c = session(3, { user: 'bob', startedAt: T0 + 1000 });
      for (const s of [a, b, c]) await store.createSession(s);
      await store.updateSession(a.id, {
        counters: { requests: 3 },
        tokens: { prompt: 30, completion: 12, total: 42 },
        models: ['small', 'large'],
        modelUsage: { small: { requests: 2, prompt: 10, completion: 4 }, large: { requests: 1, prompt: 20, completion: 8 } },
      });
      // a second flush of the same session, from another replica's connection: shares add up
      await peer.updateSession(a.id, { counters: { requests: 1 }, tokens: { prompt: 5, completion: 1, total: 6 }, models: ['small'], modelUsage: { small: { requests: 1, prompt: 5, completion: 1 } } });
      await store.updateSession(b.id, { counters: { requests: 2 } });
      await store.updateSession(c.id, { counters: { requests: 1 }, tokens: { prompt: 7, completion: 3, total: 10 }, models: ['small'], modelUsage: { small: { requests: 1, prompt: 7, completion: 3 } } });

      expect(await peer.usage({ by: 'user' })).toEqual([
        { key: 'alice', sessions: 2, requests: 6, inputTokens: 35, outputTokens: 13 },
        { key: 'bob', sessions: 1, requests: 1, inputTokens: 7, outputTokens: 3 },
      ]);
      expect(await store.usage({ by: 'connection', user: 'alice' })).toEqual([
        { key: 'llm', sessions: 1, requests: 4, inputTokens: 35, outputTokens: 13 },
        { key: 'triton', sessions: 1, requests: 2, inputTokens: 0, outputTokens: 0 },
      ]);
      expect(await store.usage({ by: 'model' })).toEqual([
        { key: 'large', sessions: 1, requests: 1, inputTokens: 20, outputTokens: 8 },
        { key: 'small', sessions: 2, requests: 4, inputTokens: 22, outputTokens: 8 },
      ]);
      expect(await store.usage({ by: 'model', since: T0 + 500, connection: 'llm' })).toEqual([{ key: 'small', sessions: 1, requests: 1, inputTokens: 7, outputTokens: 3 }]);
      expect(await store.usage({ by: 'user', user: 'carol' })).toEqual([]);
    });
  });
}
