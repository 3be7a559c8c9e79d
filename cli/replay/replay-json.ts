import type { ExchangeDetail, MessageView, SessionDetail, SessionSummary, TcpTimelineEntry } from '../tui/model.js';
import type { ResendDiff } from '../tui/word-diff.js';

/**
 * The `--json` of `sluice replay`, in the API's spelling: snake_case keys, exchanges numbered from 1 (as
 * `--exchange`, `resend_of` and `sessions show` number them), times as in `sessions show --json`. The
 * TUI's view model stays camelCase; scripts read this instead, so the model can change without them.
 * Recorded bodies and headers are passed through untouched: they are the caller's data, not ours.
 */
export function exchangeJson(x: ExchangeDetail): Record<string, unknown> {
  return {
    index: x.index + 1,
    id: x.id,
    t: x.startedAt,
    method: x.method,
    path: x.path,
    status: x.status,
    complete: x.complete ?? null,
    bytes_up: x.bytesUp ?? null,
    bytes_down: x.bytesDown ?? null,
    streamed: x.streamed,
    model: x.model ?? null,
    usage: x.usage === undefined ? null : { prompt_tokens: x.usage.in, completion_tokens: x.usage.out },
    finish_reason: x.finishReason ?? null,
    duration_ms: x.latencyMs ?? null,
    ttfb_ms: x.ttfbMs ?? null,
    decision: x.decision === undefined ? null : { action: x.decision.action, rule: x.decision.policy ?? null },
    review: x.review === undefined ? null : { id: x.review.id, outcome: x.review.outcome, by: x.review.by ?? null },
    error: x.error === undefined ? null : { code: x.error.code, message: x.error.message },
    request: messageJson(x.request),
    response: messageJson(x.response),
    masking: x.masking.map((m) => ({ entity: m.entity, rule: m.rule, count: m.count })),
    chunks: x.chunks.map((c) => ({ t: c.t, text: c.text })),
    waits: x.waits.map((w) => ({ from: w.from, to: w.to, kind: w.kind })),
  };
}

function messageJson(m: MessageView): Record<string, unknown> {
  return { headers: m.headers, body: m.body, recorded: m.recorded, digest: m.digest === undefined ? null : { bytes: m.digest.bytes, sha256: m.digest.sha256 } };
}

function summaryJson(s: SessionSummary): Record<string, unknown> {
  return {
    id: s.id,
    started_at: new Date(s.startedAt).toISOString(),
    user: { sub: s.user.sub, email: s.user.email ?? null },
    connection: s.connection,
    connection_type: s.connectionType,
    requests: s.requests,
    models: [...s.models],
    tokens: { prompt: s.tokens.in, completion: s.tokens.out },
    denied: s.denied,
    held: s.held,
    masked: s.masked,
    status: s.status,
    resend_of: s.resendOf ?? null,
  };
}

function timelineJson(e: TcpTimelineEntry): Record<string, unknown> {
  return { t: e.t, direction: e.direction, bytes: e.bytes, preview: e.preview };
}

/** A whole session: its summary, every exchange and, for tcp, the byte timeline. */
export function sessionJson(d: SessionDetail): Record<string, unknown> {
  return { session: summaryJson(d.summary), exchanges: d.exchanges.map(exchangeJson), timeline: d.timeline.map(timelineJson) };
}

/** The `--json` of a re-send, exchanges numbered from 1. */
export function resendJson(diff: ResendDiff): ResendDiff {
  return { old: { ...diff.old, exchange: diff.old.exchange + 1 }, new: { ...diff.new, exchange: diff.new.exchange + 1 }, diff: diff.diff };
}
