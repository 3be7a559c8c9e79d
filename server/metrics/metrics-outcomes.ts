import type { OutcomeListener } from './exchange-observer.js';
import type { GatewayMetrics } from './gateway-metrics.js';
import { LabelSets } from './label-sets.js';

/** The exchange metrics, moved by each exchange's outcome as its recording holds it. */
export function metricsListener(metrics: GatewayMetrics): OutcomeListener {
  const m = metrics;
  // Label objects are reused across exchanges (see LabelSets); the `user` label, when kept, comes last.
  const exchangeLabels = new LabelSets(m.perUser ? ['connection', 'via', 'decision', 'code', 'user'] : ['connection', 'via', 'decision', 'code']);
  const durationLabels = new LabelSets(['connection', 'via']);
  const connectionLabels = new LabelSets(['connection']);
  const maskedLabels = new LabelSets(['connection', 'entity']);
  const tokenLabels = new LabelSets(m.perUser ? ['connection', 'model', 'direction', 'user'] : ['connection', 'model', 'direction']);
  return ({ exchange: x, decision, code, end, forwardedAt, firstChunkAt, streamed, answer }) => {
    const connection = x.connection.name;
    const user = m.perUser ? x.principal.sub : '';
    const now = Date.now();
    m.exchanges.inc(exchangeLabels.of(connection, x.via, decision, code, user));
    m.exchangeDuration.observe(durationLabels.of(connection, x.via), (end?.durationMs ?? now - x.startedAt) / 1000);
    if (forwardedAt !== undefined && end !== undefined && end.status > 0) m.upstreamDuration.observe(connectionLabels.of(connection), (now - forwardedAt) / 1000);
    if (streamed && firstChunkAt !== undefined) m.timeToFirstToken.observe(connectionLabels.of(connection), (firstChunkAt - x.startedAt) / 1000);
    if (end?.masking !== undefined) for (const f of end.masking) m.maskedValues.inc(maskedLabels.of(connection, f.entity), f.count);
    const usage = answer?.usage;
    if (usage !== undefined) {
      const model = answer?.model ?? 'unknown';
      if (usage.prompt_tokens !== undefined) m.tokens.inc(tokenLabels.of(connection, model, 'input', user), usage.prompt_tokens);
      if (usage.completion_tokens !== undefined) m.tokens.inc(tokenLabels.of(connection, model, 'output', user), usage.completion_tokens);
    }
  };
}
