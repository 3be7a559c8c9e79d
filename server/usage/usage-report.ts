import type { UsageReportJson } from '../../shared/usage-api.js';
import type { Store, UsageFilter } from '../store/store.js';

/** The usage report of `GET /v1/usage`: the store's groups as JSON, and their total. */
export async function usageReport(store: Pick<Store, 'usage'>, filter: UsageFilter): Promise<UsageReportJson> {
  const rows = (await store.usage(filter)).map((r) => ({ key: r.key, sessions: r.sessions, requests: r.requests, input_tokens: r.inputTokens, output_tokens: r.outputTokens }));
  // No session total: by model, a session that used two models is in two groups.
  const total = rows.reduce(
    (t, r) => ({ requests: t.requests + r.requests, input_tokens: t.input_tokens + r.input_tokens, output_tokens: t.output_tokens + r.output_tokens }),
    { requests: 0, input_tokens: 0, output_tokens: 0 },
  );
  return {
    by: filter.by,
    user: filter.user ?? null,
    connection: filter.connection ?? null,
    since: filter.since === undefined ? null : new Date(filter.since).toISOString(),
    rows,
    total,
  };
}
