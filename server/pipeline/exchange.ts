import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { ConnectionConfig } from '../config/schema.js';
import type { Principal } from '../identity/principal.js';
import type { ExchangeTrace } from '../telemetry/trace-context.js';
import type { ExchangeRecording, RecordingFacts, SessionRecorder } from './recorder.js';

/** The session an exchange belongs to: one `connect`, or one agent's run of direct-proxy calls. */
export interface SessionRef {
  readonly id: string;
  readonly reason?: string;
  /** Where the session's exchanges are recorded: opened with the session, so no exchange looks it up. */
  readonly recorder: SessionRecorder;
}

/** How the caller reached the gateway. */
export type ExchangeVia = 'tunnel' | 'proxy';

/** What a carrier knows when one of its exchanges begins. */
export interface ExchangeStart {
  /** Already authenticated by the caller of the pipeline: tunnel auth or the proxy route's bearer token. */
  readonly principal: Principal;
  readonly connection: ConnectionConfig;
  readonly session: SessionRef;
  /** The caller's address as the gateway saw it; becomes X-Forwarded-For. */
  readonly clientAddress: string;
  readonly via: ExchangeVia;
  readonly method: string;
  /** Path and query as sent upstream (relative to the upstream's base path), or host:port for TCP. */
  readonly path: string;
  /** The caller's request headers as received (before the gateway removed or injected any). */
  readonly headers: IncomingHttpHeaders;
}

/** One request/response (or one TCP stream) through the pipeline, without its recording. */
export interface ExchangeFacts extends ExchangeStart {
  readonly id: string;
  /** Milliseconds since the epoch when the gateway received the request head. */
  readonly startedAt: number;
}

/** One exchange through the pipeline; every stage sees it, and records through `recording`. */
export interface Exchange extends ExchangeFacts {
  readonly recording: ExchangeRecording;
  /** The trace context the upstream gets in place of the caller's, when the gateway traces (server/telemetry); absent, the caller's goes as sent. */
  readonly trace?: ExchangeTrace;
}

/** Begins an exchange: a new request id, and its recording in the session's recorder. */
export function startExchange(start: ExchangeStart, facts: RecordingFacts): Exchange {
  const exchange: ExchangeFacts = {
    id: newRequestId(),
    principal: start.principal,
    connection: start.connection,
    session: start.session,
    clientAddress: start.clientAddress,
    via: start.via,
    method: start.method,
    path: start.path,
    headers: start.headers,
    startedAt: Date.now(),
  };
  return { ...exchange, recording: start.session.recorder.begin(exchange, facts) };
}

/** A new, globally unique request id (`req_` + 32 hex digits), also returned to the caller as X-Request-Id. */
export function newRequestId(): string {
  // randomUUID draws from a cached entropy pool, so this costs no syscall per request.
  const u = randomUUID();
  return `req_${u.slice(0, 8)}${u.slice(9, 13)}${u.slice(14, 18)}${u.slice(19, 23)}${u.slice(24)}`;
}
