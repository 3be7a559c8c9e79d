import { bodyText, formatMs } from './display-format.js';
import type { ExchangeDetail, GrpcCallView, MessageView } from './model.js';

/** How a line of the exchange view is drawn; the plain renderer ignores it. */
export type LineStyle = 'title' | 'heading' | 'meta' | 'body' | 'notice';

/** One line of an exchange as shown. */
export interface ExchangeLine {
  readonly text: string;
  readonly style: LineStyle;
}

const WAIT_LABEL = { review: 'review hold', first_token: 'first token' } as const;

/** The answer's text: streamed chunks joined, else what the response body says. */
export function answerOf(exchange: ExchangeDetail): string {
  return exchange.chunks.map((c) => c.text).join('');
}

/** The status shown for an exchange: the HTTP status (marked when the answer was cut off), or the error code when none came. */
export function statusLabel(exchange: ExchangeDetail): string {
  if (exchange.status !== 0) return exchange.complete === false ? `${exchange.status} incomplete` : String(exchange.status);
  if (exchange.decision?.action === 'deny') return 'denied';
  return exchange.error?.code ?? '–';
}

/** The lines of one exchange, top to bottom: summary, request, response, answer. */
export function exchangeLines(x: ExchangeDetail): ExchangeLine[] {
  const lines: ExchangeLine[] = [];
  const push = (text: string, style: LineStyle): void => {
    for (const line of text.split('\n')) lines.push({ text: line, style });
  };
  if (x.grpc !== undefined) return grpcExchangeLines(x, x.grpc);
  push(`#${x.index + 1} ${x.method} ${x.path} → ${statusLabel(x)}`, 'title');
  const facts = [`latency ${formatMs(x.latencyMs)}`, `ttfb ${formatMs(x.ttfbMs)}`];
  if (x.model !== undefined) facts.push(`model ${x.model}`);
  if (x.usage !== undefined) facts.push(`tokens ${x.usage.in}/${x.usage.out}`);
  if (x.finishReason !== undefined) facts.push(`finish ${x.finishReason}`);
  push(facts.join(' · '), 'meta');
  const verdict: string[] = [];
  if (x.decision !== undefined) verdict.push(`policy ${x.decision.action}${x.decision.policy === undefined ? '' : ` (${x.decision.policy})`}`);
  if (x.review !== undefined) verdict.push(`review ${x.review.id} ${x.review.outcome}${x.review.by === undefined ? '' : ` by ${x.review.by}`}`);
  if (x.masking.length > 0) verdict.push(`masked ${x.masking.map((m) => `${m.entity}×${m.count}`).join(', ')}`);
  if (verdict.length > 0) push(verdict.join(' · '), 'meta');
  if (x.waits.length > 0) push(`waits: ${x.waits.map((w) => `${WAIT_LABEL[w.kind]} ${formatMs(w.to - w.from)}`).join(' · ')}`, 'meta');
  if (x.error !== undefined) push(`error ${x.error.code}: ${x.error.message}`, 'notice');

  message(push, 'request', x.request, false);
  message(push, 'response', x.response, x.streamed);
  if (x.streamed) {
    push(`── answer (streamed, ${x.chunks.length} chunks)`, 'heading');
    push(answerOf(x), 'body');
  }
  return lines;
}

function message(push: (text: string, style: LineStyle) => void, side: 'request' | 'response', m: MessageView, streamed: boolean): void {
  const why = m.digest?.notKept;
  const note =
    why !== undefined ? ` · body not recorded: ${why}` : m.recorded === 'masked' ? ' · body recorded masked' : m.recorded === 'none' ? ' · body not recorded' : '';
  push(`── ${side}${note}`, 'heading');
  for (const [k, v] of Object.entries(m.headers)) push(`${k}: ${v}`, 'meta');
  // A streamed body is the wire's SSE frames; the answer section shows its text instead.
  if (streamed) return;
  const body = bodyText(m.body);
  if (body !== '') push(body, 'body');
}

/** The status of a gRPC call: the trailers' name and code, else what the HTTP side says (a refusal, a cut-off call). */
export function grpcStatusLabel(x: ExchangeDetail, grpc: GrpcCallView): string {
  if (grpc.status === undefined) return statusLabel(x);
  return `${grpc.statusName ?? 'status'} (${grpc.status})${x.complete === false ? ' incomplete' : ''}`;
}

/** A gRPC call: method and status, its metadata, then each message decoded, BYTES tensors also as text. */
function grpcExchangeLines(x: ExchangeDetail, grpc: GrpcCallView): ExchangeLine[] {
  const lines: ExchangeLine[] = [];
  const push = (text: string, style: LineStyle): void => {
    for (const line of text.split('\n')) lines.push({ text: line, style });
  };
  push(`#${x.index + 1} grpc ${grpc.service}/${grpc.method} → ${grpcStatusLabel(x, grpc)}`, 'title');
  const ups = grpc.messages.filter((m) => m.direction === 'in').length;
  const facts = [`latency ${formatMs(x.latencyMs)}`, `ttfb ${formatMs(x.ttfbMs)}`, `messages ${ups} up / ${grpc.messages.length - ups} down`];
  if (x.model !== undefined) facts.push(`model ${x.model}`);
  push(facts.join(' · '), 'meta');
  if (grpc.message !== undefined) push(`grpc-message: ${grpc.message}`, grpc.status === 0 ? 'meta' : 'notice');
  const verdict: string[] = [];
  if (x.decision !== undefined) verdict.push(`policy ${x.decision.action}${x.decision.policy === undefined ? '' : ` (${x.decision.policy})`}`);
  if (x.review !== undefined) verdict.push(`review ${x.review.id} ${x.review.outcome}${x.review.by === undefined ? '' : ` by ${x.review.by}`}`);
  if (x.masking.length > 0) verdict.push(`masked ${x.masking.map((m) => `${m.entity}×${m.count}`).join(', ')}`);
  if (verdict.length > 0) push(verdict.join(' · '), 'meta');
  if (x.error !== undefined) push(`error ${x.error.code}: ${x.error.message}`, 'notice');
  push('── metadata', 'heading');
  for (const [k, v] of Object.entries(x.request.headers)) push(`${k}: ${v}`, 'meta');
  for (const m of grpc.messages) {
    const arrow = m.direction === 'in' ? '↑ request' : '↓ answer';
    const kept = m.recorded === 'masked' ? ' · recorded masked' : m.json === undefined ? (m.compressed === true ? ' · compressed, not decoded' : ' · not recorded') : '';
    push(`── ${arrow} #${m.index} at ${formatMs(m.t)} · ${m.bytes} bytes${kept}`, 'heading');
    if (m.text !== undefined) push(`text: ${m.text}`, 'body');
    if (m.json !== undefined) push(bodyText({ kind: 'json', value: m.json }), 'body');
  }
  if (x.streamed) {
    push(`── answer (streamed, ${x.chunks.length} messages)`, 'heading');
    push(answerOf(x), 'body');
  }
  return lines;
}
