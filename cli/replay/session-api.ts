import { ERRORS, SluiceError, type ErrorCode } from '../../shared/errors.js';
import { eventFromLine, eventLineSchema, sessionListSchema, STREAM_ERROR_TYPE, streamErrorLineSchema, type SessionJson } from '../../shared/sessions-api.js';
import { ApiClient } from '../api-client.js';
import { ApiStream } from '../api-stream.js';
import type { AccessToken } from '../auth/access-token.js';
import { fromEvents } from '../tui/from-events.js';
import type { SessionDetail, SessionSummary } from '../tui/model.js';

/** Filters of `GET /v1/sessions`, passed through as query parameters; `limit` caps the whole list. */
export interface SessionFilters {
  readonly user?: string;
  readonly connection?: string;
  readonly model?: string;
  readonly status?: string;
  readonly since?: string;
  readonly until?: string;
  readonly limit?: number;
}

/** How many sessions the TUI lists when no `limit` is given: a screenful many times over, still one quick load. */
export const DEFAULT_LIST_LIMIT = 500;

/** The gateway pages at most this many per request. */
const PAGE_SIZE = 100;

/** A session index row as the TUI's list shows it. */
export function summaryFromIndex(row: SessionJson): SessionSummary {
  const parsed = Date.parse(row.started_at);
  return {
    id: row.id,
    startedAt: Number.isFinite(parsed) ? parsed : 0,
    user: row.user.email === null ? { sub: row.user.sub } : { sub: row.user.sub, email: row.user.email },
    connection: row.connection,
    connectionType: row.connection_type === 'tcp' ? 'tcp' : 'http',
    requests: row.counters.requests,
    models: row.models,
    tokens: { in: row.tokens.prompt, out: row.tokens.completion },
    denied: row.counters.denied,
    held: row.counters.held,
    masked: row.counters.masked,
    status: row.status,
  };
}

/** The error a `stream.error` line reports: the session file cannot be read past that point. */
function streamError(line: unknown, id: string): SluiceError {
  const parsed = streamErrorLineSchema.safeParse(line);
  const error = parsed.success ? parsed.data.error : { code: 'ERR_GATEWAY_RESPONSE', message: 'the event stream ended with an error' };
  const code = Object.hasOwn(ERRORS, error.code) ? (error.code as ErrorCode) : 'ERR_GATEWAY_RESPONSE';
  return new SluiceError(code, { message: `Session ${id} cannot be read to its end: ${error.message}`, details: { ...error } });
}

/** Reads recorded sessions from the gateway's sessions API, as the current user (an auditor sees all). */
export class SessionApi {
  readonly gateway: string;
  readonly #token: string;
  readonly #api: ApiClient;
  readonly #stream: ApiStream;

  constructor(access: Pick<AccessToken, 'gateway' | 'token'>) {
    this.gateway = access.gateway.replace(/\/+$/, '');
    this.#token = access.token;
    this.#api = new ApiClient({ gateway: this.gateway, token: access.token });
    this.#stream = new ApiStream({ gateway: this.gateway, token: access.token });
  }

  /** The bearer token the calls carry; the re-send goes out with the same one. */
  get token(): string {
    return this.#token;
  }

  /** Sessions matching the filters, newest first, following `next` until `limit` rows. */
  async list(filters: SessionFilters = {}): Promise<SessionSummary[]> {
    const { limit = DEFAULT_LIST_LIMIT, ...query } = filters;
    const out: SessionSummary[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.#api.request({
        path: '/v1/sessions',
        query: { ...query, limit: Math.min(PAGE_SIZE, limit - out.length), cursor },
        schema: sessionListSchema,
      });
      out.push(...page.sessions.map(summaryFromIndex));
      cursor = page.next ?? undefined;
      // A gateway that keeps answering empty pages with a cursor must not keep us here.
      if (page.sessions.length === 0) break;
    } while (cursor !== undefined && out.length < limit);
    return out.slice(0, limit);
  }

  /** Every recorded event of a session, in the recorder's shape, streamed from `GET /v1/sessions/:id/events`. */
  async events(id: string): Promise<ReturnType<typeof eventFromLine>[]> {
    const path = `/v1/sessions/${encodeURIComponent(id)}/events`;
    const events: ReturnType<typeof eventFromLine>[] = [];
    for await (const line of this.#stream.ndjson(path)) {
      if ((line as { type?: unknown }).type === STREAM_ERROR_TYPE) throw streamError(line, id);
      const parsed = eventLineSchema.safeParse(line);
      if (!parsed.success) {
        throw new SluiceError('ERR_GATEWAY_RESPONSE', { message: `The gateway sent an event line of session ${id} without seq, t or type` });
      }
      events.push(eventFromLine(parsed.data));
    }
    return events;
  }

  /** One session with its exchanges (and tcp timeline), built from its events. */
  async load(id: string): Promise<SessionDetail> {
    const events = await this.events(id);
    if (events.length === 0) throw new SluiceError('ERR_NOT_FOUND', { message: `Session ${id} has no recorded events` });
    return fromEvents(events);
  }
}
