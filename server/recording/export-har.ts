import { STATUS_CODES } from 'node:http';
import { SluiceError } from '../../shared/errors.js';
import type { EventFields, RecordedEvent } from './event-types.js';

/** Options of the HAR export. */
export interface HarOptions {
  readonly sessionId: string;
  /** Milliseconds since the epoch; event `t` counts from here. */
  readonly startedAt: number;
  readonly connection: string;
  /** `creator.version`. */
  readonly version: string;
  /** Largest body kept for one entry; larger ones are left out with a comment. Default 16 MiB. */
  readonly maxBodyBytes?: number;
  /** Largest total of bodies held for entries not yet written (concurrent exchanges). Default 64 MiB. */
  readonly maxBufferedBytes?: number;
}

type Headers = Record<string, string | string[]>;

/** What the log's comment adds for a gRPC session, whose calls are counted in `_grpc_calls_left_out`. */
const GRPC_COMMENT = ': a gRPC session, whose calls HAR cannot represent, so none is listed (see _grpc_calls_left_out); export it as jsonl for its calls and messages';

interface Body {
  chunks: Buffer[];
  bytes: number;
  dropped: boolean;
}

/** What one exchange's events say, gathered until it can be written. */
interface Pending {
  readonly id: string;
  readonly firstT: number;
  request?: EventFields['exchange.request'];
  refused?: { method: string; path: string };
  response?: EventFields['exchange.response'];
  end?: EventFields['exchange.end'];
  endT?: number;
  error?: EventFields['exchange.error'];
  decision?: EventFields['policy.decision'];
  readonly up: Body;
  readonly down: Body;
  done: boolean;
}

const newBody = (): Body => ({ chunks: [], bytes: 0, dropped: false });

function harHeaders(headers: Headers | undefined): { name: string; value: string }[] {
  return Object.entries(headers ?? {}).flatMap(([name, v]) => (Array.isArray(v) ? v.map((value) => ({ name, value })) : [{ name, value: v }]));
}

function header(headers: Headers | undefined, name: string): string | undefined {
  const v = headers?.[name];
  return Array.isArray(v) ? v[0] : v;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Body bytes as HAR text: UTF-8 when they decode, base64 otherwise. */
function bodyText(bytes: Buffer): { text: string; encoding?: 'base64' } {
  try {
    return { text: utf8.decode(bytes) };
  } catch {
    return { text: bytes.toString('base64'), encoding: 'base64' };
  }
}

/**
 * HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/) of an HTTP session, written as it is read:
 * the document's opening, then one entry per exchange in the order they started, then the closing.
 * Request and response bodies appear when the connection recorded them (`record.*_body: raw`);
 * otherwise a comment says why they are absent. `request.url` is `http://<connection><path>`: the
 * connection name stands for the upstream, whose address the gateway keeps to itself. Timings the
 * gateway cannot know (dns, connect, ssl) are -1; `wait` is the time to the response head.
 * Fields starting with `_` are sluice's own (exchange id, model, usage, policy decision, error, and the
 * size and SHA-256 of bodies kept as digests). Every exchange has an entry, refused ones included, with the
 * status the caller was answered; one whose answer was cut off or never sent says so in its `comment`.
 */
export async function* harLines(events: AsyncIterable<RecordedEvent>, options: HarOptions): AsyncGenerator<string> {
  const maxBody = options.maxBodyBytes ?? 16 * 1024 * 1024;
  const maxBuffered = options.maxBufferedBytes ?? 64 * 1024 * 1024;
  const pending = new Map<string, Pending>();
  const order: Pending[] = [];
  let buffered = 0;
  let recordSettings: { request_body: string; response_body: string } = { request_body: 'masked', response_body: 'masked' };
  let opened = false;
  let first = true;
  let grpcSession = false;
  const grpcCalls = new Set<string>();

  const opening = (): string =>
    `{"log":{"version":"1.2","creator":{"name":"sluice","version":${JSON.stringify(options.version)}},` +
    `"comment":${JSON.stringify(`session ${options.sessionId} on connection ${options.connection}${grpcSession ? GRPC_COMMENT : ''}`)},"entries":[\n`;

  const keep = (body: Body, bytes: Buffer): void => {
    body.bytes += bytes.length;
    if (body.dropped) return;
    if (body.bytes > maxBody || buffered + bytes.length > maxBuffered) {
      buffered -= body.chunks.reduce((n, c) => n + c.length, 0);
      body.chunks = [];
      body.dropped = true;
      return;
    }
    body.chunks.push(bytes);
    buffered += bytes.length;
  };

  const entry = (p: Pending): string => {
    const req = p.request;
    const method = req?.method ?? p.refused?.method ?? '';
    const path = req?.path ?? p.refused?.path ?? '';
    const query = req?.query ?? '';
    const end = p.end;
    const time = end?.duration_ms ?? (p.endT === undefined ? 0 : p.endT - p.firstT);
    const wait = Math.min(end?.ttfb_ms ?? time, time);
    const status = end?.status || p.response?.status || 0;
    // A refusal (or an upstream failure before any head) is answered by the gateway itself: its JSON error.
    const gatewayAnswer = p.response === undefined && p.error !== undefined && end !== undefined && end.status > 0;
    const reqType = header(req?.headers, 'content-type') ?? 'application/octet-stream';
    const resType = header(p.response?.headers, 'content-type') ?? (gatewayAnswer ? 'application/json' : 'application/octet-stream');
    // A body refused before it arrived was never read: only its declared size is known.
    const unread = req?.body?.unread === true ? { declared: req.body.bytes } : undefined;
    const reqBytes = unread !== undefined ? (unread.declared ?? -1) : (end?.bytes_up ?? req?.body?.bytes ?? p.up.bytes);
    const resBytes = end?.bytes_down ?? p.down.bytes;
    // The recording says why a body it holds no bytes of is absent; recordings from before it, the setting.
    const absent = (body: Body, setting: string, why: string | undefined): string =>
      body.dropped ? `body of ${body.bytes} bytes left out: over the export limit` : why === undefined ? `body not recorded (record: ${setting})` : `body not recorded: ${why}`;
    const upText = p.up.chunks.length > 0 ? bodyText(Buffer.concat(p.up.chunks)) : undefined;
    const downText = p.down.chunks.length > 0 ? bodyText(Buffer.concat(p.down.chunks)) : undefined;
    const why = p.error === undefined ? 'the caller closed the connection' : p.error.code;
    const unfinished =
      end === undefined
        ? 'the exchange did not finish in this recording'
        : end.complete
          ? undefined
          : status === 0
            ? `no answer reached the caller: ${why}`
            : `the answer was cut off after ${resBytes} bytes: ${why}`;
    const postData =
      unread !== undefined
        ? { mimeType: reqType, text: '', comment: `refused before the body arrived${unread.declared === undefined ? '' : ` (${unread.declared} bytes declared)`}: never read` }
        : reqBytes > 0
          ? {
              mimeType: reqType,
              ...(upText === undefined ? { text: '', comment: absent(p.up, recordSettings.request_body, req?.body?.not_kept ?? end?.request_body?.not_kept) } : upText.encoding === undefined ? { text: upText.text } : { text: upText.text, comment: 'base64' }),
            }
          : undefined;
    const responseContent =
      downText !== undefined
        ? downText
        : gatewayAnswer
          ? { comment: `answered by the gateway: ${p.error!.code}` }
          : resBytes > 0
            ? { comment: absent(p.down, recordSettings.response_body, end?.response_body?.not_kept) }
            : {};
    const e = {
      startedDateTime: new Date(options.startedAt + p.firstT).toISOString(),
      time,
      request: {
        method,
        url: `http://${options.connection}${path}${query === '' ? '' : `?${query}`}`,
        httpVersion: 'HTTP/1.1',
        cookies: [],
        headers: harHeaders(req?.headers),
        queryString: [...new URLSearchParams(query)].map(([name, value]) => ({ name, value })),
        ...(postData === undefined ? {} : { postData }),
        headersSize: -1,
        bodySize: reqBytes,
      },
      response: {
        status,
        statusText: STATUS_CODES[status] ?? '',
        httpVersion: 'HTTP/1.1',
        cookies: [],
        headers: harHeaders(p.response?.headers),
        content: { size: resBytes, mimeType: resType, ...responseContent },
        redirectURL: header(p.response?.headers, 'location') ?? '',
        headersSize: -1,
        bodySize: p.response === undefined && !gatewayAnswer ? -1 : resBytes,
      },
      cache: {},
      timings: { blocked: -1, dns: -1, connect: -1, ssl: -1, send: 0, wait, receive: Math.max(0, time - wait) },
      _exchange: p.id,
      ...(end?.model === undefined ? {} : { _model: end.model }),
      ...(end?.usage === undefined ? {} : { _usage: end.usage }),
      ...(end?.finish_reason === undefined ? {} : { _finish_reason: end.finish_reason }),
      ...(p.decision === undefined && req === undefined ? {} : { _decision: p.decision ?? req?.decision }),
      ...(p.error === undefined ? {} : { _error: { code: p.error.code, message: p.error.message } }),
      ...(end?.request_body === undefined ? {} : { _request_body: end.request_body }),
      ...(end?.response_body === undefined ? {} : { _response_body: end.response_body }),
      ...(unfinished === undefined ? {} : { comment: unfinished }),
    };
    buffered -= p.up.chunks.reduce((n, c) => n + c.length, 0) + p.down.chunks.reduce((n, c) => n + c.length, 0);
    return JSON.stringify(e);
  };

  // Entries go out in the order exchanges started; a finished one waits for those before it.
  const flush = function* (all: boolean): Generator<string> {
    while (order.length > 0 && (all || order[0]!.done)) {
      const p = order.shift()!;
      pending.delete(p.id);
      yield `${first ? '' : ',\n'}${entry(p)}`;
      first = false;
    }
  };

  for await (const e of events) {
    if (e.type === 'session.start') {
      const f = e.fields as EventFields['session.start'];
      // HAR entries are HTTP requests with bodies; tcp chunks have no faithful form in it.
      if (f.connection.type === 'tcp') {
        throw new SluiceError('ERR_BAD_REQUEST', { message: `Session ${options.sessionId} is a tcp session: HAR is for HTTP sessions (export it as jsonl)` });
      }
      // Nor do gRPC messages: an entry would show a POST without its messages, as if none were recorded.
      // The document stays valid HAR with no entries and says how many calls it leaves out, and where they are.
      grpcSession = f.connection.type === 'grpc';
      recordSettings = f.record;
    }
    if (!opened) {
      opened = true;
      yield opening();
    }
    const id = (e.fields as { exchange?: unknown }).exchange;
    if (typeof id !== 'string') continue;
    if (grpcSession) {
      grpcCalls.add(id);
      continue;
    }
    let p = pending.get(id);
    if (p === undefined) {
      p = { id, firstT: e.t, up: newBody(), down: newBody(), done: false };
      pending.set(id, p);
      order.push(p);
    }
    switch (e.type) {
      case 'exchange.request':
        p.request = e.fields as EventFields['exchange.request'];
        if (e.payload !== undefined) keep(p.up, e.payload);
        break;
      case 'exchange.response':
        p.response = e.fields as EventFields['exchange.response'];
        break;
      case 'exchange.chunk': {
        const f = e.fields as EventFields['exchange.chunk'];
        if (e.payload !== undefined) keep(f.dir === 'up' ? p.up : p.down, e.payload);
        break;
      }
      case 'exchange.end':
        p.end = e.fields as EventFields['exchange.end'];
        p.endT = e.t;
        p.done = true;
        break;
      case 'exchange.error': {
        const f = e.fields as EventFields['exchange.error'];
        p.error = f;
        p.endT ??= e.t;
        // Refused before forwarding: no request record and no end will follow.
        if (f.request !== undefined) {
          p.refused = f.request;
          p.done = true;
        }
        break;
      }
      case 'policy.decision':
        p.decision = e.fields as EventFields['policy.decision'];
        break;
      default:
        break;
    }
    yield* flush(false);
  }
  if (!opened) yield opening();
  yield* flush(true);
  yield grpcSession ? `\n],"_grpc_calls_left_out":${grpcCalls.size}}}\n` : '\n]}}\n';
}
