import { isDenial } from '../../shared/denial-codes.js';
import { decodeGrpcMessage, grpcMethodOf, grpcStatusName } from '../../shared/grpc-status-names.js';
import { jsonAnswerText, SseTextExtractor } from './answer-text.js';
import { grpcMessageText } from './grpc-message-text.js';
import type {
  AnswerChunk,
  BodyDigestView,
  BodyRecorded,
  BodyView,
  ConnectionType,
  DecisionView,
  ExchangeDetail,
  GrpcCallView,
  GrpcMessageView,
  MaskingCount,
  MessageView,
  ReviewView,
  SessionDetail,
  SessionStatus,
  TcpTimelineEntry,
  TokenCounts,
  Wait,
} from './model.js';
import type { DataEncoding, RecordedDigest, RecordedHeaders, RecordedUsage } from './recorded-event.js';
import { normalizeEvents } from './recorder-event-shape.js';

/** Longest tcp preview, in characters; enough to recognise a protocol line. */
const PREVIEW_CHARS = 48;

interface RawChunk {
  readonly t: number;
  readonly data: string;
}

/** What the events of one exchange say, gathered before the exchange is built. */
interface ExchangeDraft {
  id: string;
  firstT: number;
  method: string;
  path: string;
  requestHeaders: Record<string, string>;
  requestBody?: string;
  requestRecorded: BodyRecorded;
  requestT?: number;
  responseT?: number;
  status: number;
  responseHeaders: Record<string, string>;
  responseBody?: string;
  responseRecorded: BodyRecorded;
  chunks: RawChunk[];
  endT?: number;
  complete?: boolean;
  bytesUp?: number;
  bytesDown?: number;
  requestDigest?: BodyDigestView;
  responseDigest?: BodyDigestView;
  durationMs?: number;
  ttfbMs?: number;
  model?: string;
  usage?: TokenCounts;
  finishReason?: string;
  error?: { code: string; message: string };
  decision?: DecisionView;
  review?: ReviewView;
  reviewFrom?: number;
  reviewTo?: number;
  masking: MaskingCount[];
  grpcMessages: GrpcMessageView[];
  trailers?: Record<string, string>;
}

/**
 * Builds the view model of one session from its recorded events (in any order; sorted by `seq`, then
 * `t`), flat or in the recorder's `{fields, payload}` shape.
 */
export function fromEvents(events: readonly unknown[]): SessionDetail {
  const sorted = normalizeEvents(events).sort((a, b) => a.seq - b.seq || a.t - b.t);
  const drafts = new Map<string, ExchangeDraft>();
  const timeline: TcpTimelineEntry[] = [];
  let id = '';
  let startedAt = 0;
  let user = { sub: '' } as { sub: string; email?: string };
  let connection = '';
  let connectionType: ConnectionType | undefined;
  let resendOf: string | undefined;
  let status: SessionStatus = 'open';

  const draft = (exchange: string, t: number): ExchangeDraft => {
    let d = drafts.get(exchange);
    if (d === undefined) {
      d = {
        id: exchange,
        firstT: t,
        method: '',
        path: '',
        requestHeaders: {},
        requestRecorded: 'none',
        status: 0,
        responseHeaders: {},
        responseRecorded: 'none',
        chunks: [],
        masking: [],
        grpcMessages: [],
      };
      drafts.set(exchange, d);
    }
    d.firstT = Math.min(d.firstT, t);
    return d;
  };

  for (const e of sorted) {
    switch (e.type) {
      case 'session.start':
        id = e.session;
        startedAt = e.started_at;
        user = e.user.email === undefined ? { sub: e.user.sub } : { sub: e.user.sub, email: e.user.email };
        connection = e.connection;
        connectionType = e.connection_type;
        resendOf = e.resend_of;
        break;
      case 'session.end':
        status = e.status ?? 'closed';
        break;
      case 'exchange.request': {
        const d = draft(e.exchange, e.t);
        d.method = e.method;
        d.path = e.path;
        d.requestT = e.t;
        d.requestHeaders = flattenHeaders(e.headers);
        if (e.body !== undefined) d.requestBody = decode(e.body, e.encoding);
        d.requestRecorded = e.body_recorded ?? (e.body === undefined ? 'none' : 'raw');
        break;
      }
      case 'exchange.response': {
        const d = draft(e.exchange, e.t);
        d.responseT = e.t;
        d.status = e.status;
        d.responseHeaders = flattenHeaders(e.headers);
        if (e.body !== undefined) d.responseBody = decode(e.body, e.encoding);
        if (e.body_recorded !== undefined) d.responseRecorded = e.body_recorded;
        break;
      }
      case 'exchange.chunk':
        draft(e.exchange, e.t).chunks.push({ t: e.t, data: decode(e.data, e.encoding) });
        break;
      case 'exchange.end': {
        const d = draft(e.exchange, e.t);
        d.endT = e.t;
        if (e.status !== 0 || d.status === 0) d.status = e.status;
        d.complete = e.complete;
        d.bytesUp = e.bytes_up;
        d.bytesDown = e.bytes_down;
        d.requestDigest = digestOf(e.request_body);
        d.responseDigest = digestOf(e.response_body);
        d.durationMs = e.duration_ms;
        d.ttfbMs = e.ttfb_ms;
        d.model = e.model ?? d.model;
        if (e.usage !== undefined) d.usage = usageCounts(e.usage);
        d.finishReason = e.finish_reason;
        if (e.trailers !== undefined) d.trailers = flattenHeaders(e.trailers);
        break;
      }
      case 'grpc.message': {
        const d = draft(e.exchange, e.t);
        const text = e.direction === 'out' ? grpcMessageText(e.json) : undefined;
        // `t` is the session's until the exchange is built, which makes it the exchange's.
        d.grpcMessages.push({
          t: e.t,
          direction: e.direction,
          index: e.index,
          bytes: e.bytes,
          recorded: e.recorded ?? (e.json === undefined ? 'none' : 'raw'),
          ...defined('compressed', e.compressed),
          ...defined('json', e.json),
          ...defined('text', text),
          ...defined('data', e.data),
        });
        break;
      }
      case 'exchange.error': {
        const d = draft(e.exchange, e.t);
        d.error = { code: e.code, message: e.message };
        d.endT ??= e.t;
        break;
      }
      case 'policy.decision':
        draft(e.exchange, e.t).decision = e.policy === undefined ? { action: e.action } : { action: e.action, policy: e.policy };
        break;
      case 'review.created': {
        const d = draft(e.exchange, e.t);
        d.review = { id: e.review, outcome: 'pending' };
        d.reviewFrom = e.t;
        break;
      }
      case 'review.approved':
      case 'review.rejected': {
        const d = draft(e.exchange, e.t);
        const outcome = e.type === 'review.approved' ? 'approved' : 'rejected';
        d.review = e.by === undefined ? { id: e.review, outcome } : { id: e.review, outcome, by: e.by };
        d.reviewTo = e.t;
        break;
      }
      case 'masking.summary': {
        const d = draft(e.exchange, e.t);
        if (e.entries !== undefined) d.masking.push(...e.entries.map((m) => ({ ...m })));
        else if (e.entity !== undefined) d.masking.push({ entity: e.entity, rule: e.rule ?? '', count: e.count ?? 1 });
        break;
      }
      case 'tcp.chunk': {
        // A tcp connection is an exchange too; its bytes go to the session's timeline.
        if (e.exchange !== undefined) draft(e.exchange, e.t);
        const bytes = Buffer.from(e.data, e.encoding ?? 'utf8');
        timeline.push({ t: e.t, direction: e.direction, bytes: bytes.length > 0 ? bytes.length : (e.bytes ?? 0), preview: preview(bytes) });
        break;
      }
      default:
        break;
    }
  }

  const exchanges = [...drafts.values()].sort((a, b) => a.firstT - b.firstT).map((d, index) => buildExchange(d, index, connectionType === 'grpc'));
  const models: string[] = [];
  // Like the gateway's index, list the models that answered, not those merely asked for.
  for (const x of exchanges) {
    const answered = x.status >= 200 && x.status < 400;
    if (answered && x.model !== undefined && !models.includes(x.model)) models.push(x.model);
  }
  const summary = {
    id,
    startedAt,
    user,
    connection,
    connectionType: connectionType ?? (timeline.length > 0 ? 'tcp' : 'http'),
    requests: exchanges.length,
    models,
    tokens: {
      in: exchanges.reduce((n, x) => n + (x.usage?.in ?? 0), 0),
      out: exchanges.reduce((n, x) => n + (x.usage?.out ?? 0), 0),
    },
    // Counted as the gateway's index counts them: refusals by access, policy, a reviewer or a grant.
    denied: exchanges.filter((x) => x.error !== undefined && isDenial(x.error.code)).length,
    held: exchanges.filter((x) => x.review !== undefined).length,
    masked: exchanges.reduce((n, x) => n + x.masking.reduce((m, c) => m + c.count, 0), 0),
    status,
    ...(resendOf === undefined ? {} : { resendOf }),
  } as const;
  return { summary, exchanges, timeline };
}

function buildExchange(d: ExchangeDraft, index: number, grpcSession: boolean): ExchangeDetail {
  const start = d.firstT;
  const grpc = grpcSession ? grpcCall(d, start) : undefined;
  if (grpc !== undefined) return grpcExchange(d, index, grpc);
  const contentType = d.responseHeaders['content-type'] ?? '';
  const streamed = contentType.includes('text/event-stream');
  const rawBody = d.responseBody ?? (d.chunks.length > 0 ? d.chunks.map((c) => c.data).join('') : undefined);
  const responseRecorded: BodyRecorded = rawBody === undefined ? 'none' : d.responseRecorded === 'none' ? 'raw' : d.responseRecorded;
  const responseBody = parseBody(rawBody, contentType);
  const requestBody = parseBody(d.requestBody, d.requestHeaders['content-type'] ?? '');

  const chunks = streamed ? sseChunks(d.chunks, start) : wholeAnswer(responseBody, (d.chunks.at(-1)?.t ?? d.responseT ?? d.endT ?? start) - start);
  // For a stream the first token is the first chunk with answer text: a role-only chunk comes early.
  const firstTextT = streamed && chunks[0] !== undefined ? chunks[0].t + start : undefined;
  const firstByteT = firstTextT ?? d.chunks[0]?.t ?? d.responseT;

  return {
    ...exchangeFields(d, index, start, firstByteT),
    ...defined('model', d.model ?? modelOf(responseBody) ?? modelOf(requestBody)),
    ...defined('usage', d.usage),
    ...defined('finishReason', d.finishReason),
    request: message(d.requestHeaders, requestBody, d.requestRecorded, d.requestDigest),
    response: message(d.responseHeaders, responseBody, responseRecorded, d.responseDigest),
    masking: d.masking,
    streamed,
    chunks,
  };
}

/** The gRPC facts of an exchange of a grpc session; undefined when its path names no method (a refusal of something else). */
function grpcCall(d: ExchangeDraft, start: number): GrpcCallView | undefined {
  const call = grpcMethodOf(d.path);
  if (call === undefined) return undefined;
  const statusText = d.trailers?.['grpc-status'];
  const status = statusText !== undefined && /^\d+$/.test(statusText) ? Number(statusText) : undefined;
  const message = d.trailers?.['grpc-message'];
  return {
    ...call,
    ...defined('status', status),
    ...defined('statusName', grpcStatusName(status) ?? undefined),
    ...defined('message', message === undefined || message === '' ? undefined : decodeGrpcMessage(message)),
    messages: d.grpcMessages.map((m) => ({ ...m, t: m.t - start })).sort((a, b) => a.t - b.t || a.index - b.index),
  };
}

/**
 * What every exchange's view holds whatever its protocol: who, when, how it ended, its timings (the first byte
 * being the first answer text or message, `firstT`), its decision and review, and what it waited on.
 */
function exchangeFields(d: ExchangeDraft, index: number, start: number, firstT: number | undefined) {
  return {
    index,
    id: d.id,
    startedAt: start,
    method: d.method,
    path: d.path,
    status: d.status,
    ...defined('complete', d.complete),
    ...defined('bytesUp', d.bytesUp),
    ...defined('bytesDown', d.bytesDown),
    ...defined('latencyMs', d.durationMs ?? (d.endT === undefined ? undefined : d.endT - start)),
    ...defined('ttfbMs', d.ttfbMs ?? (firstT === undefined ? undefined : firstT - start)),
    ...defined('error', d.error),
    ...defined('decision', d.decision),
    ...defined('review', d.review),
    waits: exchangeWaits(d, start, firstT),
  };
}

/**
 * What an exchange waited on: its review, then the upstream's first token (or message), counted from when the
 * request went on, after any review.
 */
function exchangeWaits(d: ExchangeDraft, start: number, firstT: number | undefined): Wait[] {
  const waits: Wait[] = [];
  if (d.reviewFrom !== undefined) waits.push({ from: d.reviewFrom - start, to: (d.reviewTo ?? d.endT ?? d.reviewFrom) - start, kind: 'review' });
  const sentT = d.reviewTo ?? d.requestT ?? start;
  if (firstT !== undefined && firstT > sentT) waits.push({ from: sentT - start, to: firstT - start, kind: 'first_token' });
  return waits;
}

/**
 * A gRPC exchange: its answer is the upstream's messages, each one chunk at its recorded time (so a server
 * stream plays back at its pace with the SSE machinery), as text when it holds BYTES tensors, else as JSON.
 */
function grpcExchange(d: ExchangeDraft, index: number, grpc: GrpcCallView): ExchangeDetail {
  const start = d.firstT;
  const answers = grpc.messages.filter((m) => m.direction === 'out');
  const chunks: AnswerChunk[] = answers.flatMap((m) => {
    const text = m.text ?? (m.json === undefined ? undefined : JSON.stringify(m.json));
    return text === undefined || text === '' ? [] : [{ t: m.t, text }];
  });
  const requestMessage = grpc.messages.find((m) => m.direction === 'in');
  const firstAnswerT = answers[0] === undefined ? undefined : answers[0].t + start;
  const body = (m: GrpcMessageView | undefined): BodyView => (m?.json === undefined ? { kind: 'none' } : { kind: 'json', value: m.json });
  return {
    ...exchangeFields(d, index, start, firstAnswerT),
    ...defined('model', d.model ?? modelName(requestMessage?.json)),
    request: message(d.requestHeaders, body(requestMessage), requestMessage?.recorded ?? 'none', d.requestDigest),
    response: message(d.responseHeaders, answers.length === 1 ? body(answers[0]) : { kind: 'none' }, answers[0]?.recorded ?? 'none', d.responseDigest),
    masking: d.masking,
    streamed: answers.length > 1,
    chunks,
    grpc,
  };
}

/** `model_name` of a KServe request, the model a gRPC call asked for. */
function modelName(json: unknown): string | undefined {
  const name = (json as { model_name?: unknown } | undefined)?.model_name;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

/** `{key: value}` when value is defined, `{}` otherwise: optional fields stay absent, not undefined. */
function defined<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function message(headers: Record<string, string>, body: BodyView, recorded: BodyRecorded, digest: BodyDigestView | undefined): MessageView {
  return digest === undefined ? { headers, body, recorded } : { headers, body, recorded, digest };
}

function digestOf(d: RecordedDigest | undefined): BodyDigestView | undefined {
  if (d === undefined || typeof d.bytes !== 'number' || typeof d.sha256 !== 'string') return undefined;
  return typeof d.not_kept === 'string' ? { bytes: d.bytes, sha256: d.sha256, notKept: d.not_kept } : { bytes: d.bytes, sha256: d.sha256 };
}

function sseChunks(raw: readonly RawChunk[], start: number): AnswerChunk[] {
  const extractor = new SseTextExtractor();
  const out: AnswerChunk[] = [];
  for (const c of raw) {
    const text = extractor.push(c.data);
    if (text !== '') out.push({ t: c.t - start, text });
  }
  return out;
}

function wholeAnswer(body: BodyView, t: number): AnswerChunk[] {
  const text = body.kind === 'json' ? jsonAnswerText(body.value) : body.kind === 'text' ? body.text : undefined;
  return text === undefined || text === '' ? [] : [{ t, text }];
}

function parseBody(text: string | undefined, contentType: string): BodyView {
  if (text === undefined || text === '') return { kind: 'none' };
  if (contentType.includes('json') || /^\s*[{[]/.test(text)) {
    try {
      return { kind: 'json', value: JSON.parse(text) as unknown };
    } catch {
      // Not JSON after all (or truncated): show it as text.
    }
  }
  return { kind: 'text', text };
}

function modelOf(body: BodyView): string | undefined {
  if (body.kind !== 'json' || typeof body.value !== 'object' || body.value === null) return undefined;
  const model = (body.value as { model?: unknown }).model;
  return typeof model === 'string' ? model : undefined;
}

function usageCounts(u: RecordedUsage): TokenCounts {
  return { in: u.prompt_tokens ?? u.input_tokens ?? 0, out: u.completion_tokens ?? u.output_tokens ?? 0 };
}

function flattenHeaders(h: RecordedHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h ?? {})) {
    if (v === undefined) continue;
    out[k.toLowerCase()] = typeof v === 'string' ? v : v.join(', ');
  }
  return out;
}

function decode(data: string, encoding: DataEncoding | undefined): string {
  return encoding === 'base64' ? Buffer.from(data, 'base64').toString('utf8') : data;
}

/** The first bytes as printable text; line ends as "↵", other control bytes as "·". */
function preview(bytes: Buffer): string {
  let s = '';
  for (const b of bytes.subarray(0, PREVIEW_CHARS)) {
    if (b === 0x0a) s += '↵';
    else if (b === 0x0d) continue;
    else if (b < 0x20 || b >= 0x7f) s += '·';
    else s += String.fromCharCode(b);
  }
  return bytes.length > PREVIEW_CHARS ? `${s}…` : s;
}
