import type { OutcomeListener } from './exchange-observer.js';
import type { GatewayMetrics } from './gateway-metrics.js';

/** The exchange metrics, moved by each exchange's outcome as its recording holds it. */
export function metricsListener(metrics: GatewayMetrics): OutcomeListener {
  const m = metrics;
  return ({ exchange: x, decision, code, end, forwardedAt, firstChunkAt, streamed, answer }) => {
    const connection = x.connection.name;
    const user = m.perUser ? { user: x.principal.sub } : {};
    const now = Date.now();
    m.exchanges.inc({ connection, via: x.via, decision, code, ...user });
    m.exchangeDuration.observe({ connection, via: x.via }, (end?.durationMs ?? now - x.startedAt) / 1000);
    if (forwardedAt !== undefined && end !== undefined && end.status > 0) m.upstreamDuration.observe({ connection }, (now - forwardedAt) / 1000);
    if (streamed && firstChunkAt !== undefined) m.timeToFirstToken.observe({ connection }, (firstChunkAt - x.startedAt) / 1000);
    for (const f of end?.masking ?? []) m.maskedValues.inc({ connection, entity: f.entity }, f.count);
    const usage = answer?.usage;
    if (usage !== undefined) {
      const model = answer?.model ?? 'unknown';
      if (usage.prompt_tokens !== undefined) m.tokens.inc({ connection, model, direction: 'input', ...user }, usage.prompt_tokens);
      if (usage.completion_tokens !== undefined) m.tokens.inc({ connection, model, direction: 'output', ...user }, usage.completion_tokens);
    }
  };
}
