/**
 * What one exchange's spans say, worked out from its outcome as the recording holds it: the exchange
 * span's attributes and its stage children with their times. Pure, so it is tested without a collector;
 * otlp-tracing.ts hands the plan to the OpenTelemetry SDK.
 */
import type { ExchangeOutcome } from '../metrics/exchange-observer.js';

export type SpanAttributes = Record<string, string | number | boolean>;

/** One stage of an exchange, as a child span. */
export interface StageSpan {
  readonly name: string;
  /** The upstream call is the one span for work done by another service. */
  readonly kind: 'internal' | 'client';
  readonly start: number;
  readonly end: number;
  readonly attributes: SpanAttributes;
  readonly events?: readonly { readonly name: string; readonly time: number }[];
}

/** The exchange span's attributes and outcome, and its stage children. */
export interface ExchangeSpanPlan {
  readonly attributes: SpanAttributes;
  /** A failure the gateway or the upstream answered with (5xx, or an exchange that could not be answered); the error code otherwise rides as `error.type`. */
  readonly error?: string;
  readonly end: number;
  readonly stages: readonly StageSpan[];
}

/** OpenAI-compatible API paths and the GenAI operation each is (OpenTelemetry GenAI semantic conventions). */
const GENAI_OPERATIONS: readonly (readonly [suffix: string, operation: string])[] = [
  ['/chat/completions', 'chat'],
  ['/completions', 'text_completion'],
  ['/embeddings', 'embeddings'],
  ['/responses', 'chat'],
];

/** Plans the spans of one exchange; `now` ends what the recording did not see end. */
export function planExchangeSpans(outcome: ExchangeOutcome, options: { readonly perUser: boolean; readonly now: number }): ExchangeSpanPlan {
  const { exchange: x, steps, end } = outcome;
  const endedAt = steps.endedAt ?? options.now;
  const type = x.connection.type;
  const attributes: SpanAttributes = {
    'sluice.connection': x.connection.name,
    'sluice.connection.type': type,
    'sluice.via': x.via,
    'sluice.decision': outcome.decision,
    'sluice.session_id': x.session.id,
    'sluice.request_id': x.id,
  };
  if (options.perUser) attributes['enduser.id'] = x.principal.sub;
  if (outcome.code !== 'none') attributes['error.type'] = outcome.code;
  const path = x.path.split('?', 1)[0]!;
  if (type === 'grpc') {
    attributes['rpc.system'] = 'grpc';
    const [, service, method] = /^\/([^/]+)\/([^/]+)$/.exec(path) ?? [];
    if (service !== undefined && method !== undefined) {
      attributes['rpc.service'] = service;
      attributes['rpc.method'] = method;
    }
    const grpcStatus = grpcStatusOf(outcome);
    if (grpcStatus !== undefined) attributes['rpc.grpc.status_code'] = grpcStatus;
  } else if (type === 'http') {
    attributes['http.request.method'] = x.method;
    attributes['url.path'] = path;
    if (end !== undefined && end.status > 0) attributes['http.response.status_code'] = end.status;
  }
  Object.assign(attributes, genAiAttributes(outcome, path));
  const masked = maskedCounts(outcome);
  Object.assign(attributes, masked);

  const stages: StageSpan[] = [];
  const stage = (name: string, start: number | undefined, stop: number | undefined, attrs: SpanAttributes = {}, kind: StageSpan['kind'] = 'internal', events?: StageSpan['events']): void => {
    if (start === undefined) return;
    stages.push({ name, kind, start, end: Math.max(start, stop ?? endedAt), attributes: attrs, ...(events === undefined ? {} : { events }) });
  };
  stage('sluice.policy', x.startedAt, steps.decidedAt, { 'sluice.decision': outcome.decision });
  stage('sluice.approval_wait', steps.reviewRequestedAt, steps.reviewDecidedAt ?? steps.endingAt);
  stage('sluice.recording', steps.requestRecordingAt, steps.requestRecordedAt ?? steps.endingAt, { 'sluice.record': 'request' });
  const upstreamAttrs: SpanAttributes = {};
  if (type === 'http' && end !== undefined && end.status > 0 && outcome.code === 'none') upstreamAttrs['http.response.status_code'] = end.status;
  stage(
    'sluice.upstream',
    outcome.forwardedAt,
    steps.endingAt,
    upstreamAttrs,
    'client',
    outcome.firstChunkAt === undefined ? undefined : [{ name: 'sluice.first_chunk', time: outcome.firstChunkAt }],
  );
  stage('sluice.masking', steps.maskingAt, steps.endingAt, masked);
  stage('sluice.recording', steps.endingAt, steps.endedAt, { 'sluice.record': 'end' });

  const failed = outcome.code !== 'none' && (end === undefined || end.status === 0 || end.status >= 500);
  const upstreamFailed = outcome.code === 'none' && end !== undefined && end.status >= 500 && type === 'http';
  return {
    attributes,
    ...(failed ? { error: outcome.code } : upstreamFailed ? { error: `HTTP ${end.status}` } : {}),
    end: Math.max(x.startedAt, endedAt),
    stages,
  };
}

/** GenAI semantic-convention attributes, for an OpenAI-compatible call over an HTTP connection. */
function genAiAttributes(outcome: ExchangeOutcome, path: string): SpanAttributes {
  if (outcome.exchange.connection.type !== 'http') return {};
  const operation = GENAI_OPERATIONS.find(([suffix]) => path.endsWith(suffix))?.[1];
  const attrs: SpanAttributes = {};
  if (operation !== undefined) {
    attrs['gen_ai.operation.name'] = operation;
    // The wire protocol is OpenAI's, whichever server speaks it: what the OpenAI instrumentations report too.
    attrs['gen_ai.system'] = 'openai';
  }
  if (outcome.requestModel !== undefined) attrs['gen_ai.request.model'] = outcome.requestModel;
  const answer = outcome.answer;
  if (answer?.model !== undefined) attrs['gen_ai.response.model'] = answer.model;
  const usage = answer?.usage;
  if (usage?.prompt_tokens !== undefined) attrs['gen_ai.usage.input_tokens'] = usage.prompt_tokens;
  if (usage?.completion_tokens !== undefined) attrs['gen_ai.usage.output_tokens'] = usage.completion_tokens;
  return attrs;
}

/** What masking replaced, as counts by entity; never a value. */
function maskedCounts(outcome: ExchangeOutcome): SpanAttributes {
  const found = outcome.end?.masking;
  if (found === undefined || found.length === 0) return {};
  const attrs: SpanAttributes = {};
  let total = 0;
  for (const f of found) {
    total += f.count;
    const key = `sluice.masked.${f.entity}`;
    attrs[key] = ((attrs[key] as number | undefined) ?? 0) + f.count;
  }
  attrs['sluice.masked_values'] = total;
  return attrs;
}

/** The gRPC status the caller got, from the trailers on record. */
function grpcStatusOf(outcome: ExchangeOutcome): number | undefined {
  const value = outcome.end?.trailers?.['grpc-status'];
  const status = Number(Array.isArray(value) ? value[0] : value);
  return value === undefined || !Number.isInteger(status) ? undefined : status;
}
