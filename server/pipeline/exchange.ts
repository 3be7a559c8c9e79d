import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { HttpConnectionConfig, TcpConnectionConfig } from '../config/schema.js';
import type { Principal } from '../identity/principal.js';

/** The session an exchange belongs to: one `connect`, or one agent's run of direct-proxy calls. */
export interface ExchangeSession {
  readonly id: string;
  readonly reason?: string;
}

/** How the caller reached the gateway. */
export type ExchangeVia = 'tunnel' | 'proxy';

/** What the caller of the pipeline (tunnel or proxy route) established before the first byte is forwarded. */
export interface ExchangeContext {
  /** Already authenticated by the caller: tunnel auth or the proxy route's bearer token. */
  readonly principal: Principal;
  readonly connection: HttpConnectionConfig;
  readonly session: ExchangeSession;
  /** The caller's address as the gateway saw it; becomes X-Forwarded-For. */
  readonly clientAddress: string;
  readonly via: ExchangeVia;
  /**
   * The request target relative to the connection's upstream, as the caller sent it: the pipeline puts it in
   * normal form under the connection's path hygiene, and refuses (and records) one it cannot.
   */
  readonly path: string;
  /** True when the client sent `Expect: 100-continue` and no 100 has been written yet. */
  readonly awaitingContinue?: boolean;
}

/** One request/response through the pipeline; every stage and every record sees this. */
export interface Exchange {
  readonly id: string;
  readonly principal: Principal;
  readonly connection: HttpConnectionConfig | TcpConnectionConfig;
  readonly session: ExchangeSession;
  readonly clientAddress: string;
  readonly via: ExchangeVia;
  readonly method: string;
  /** Path and query as sent upstream (relative to the upstream's base path), or host:port for TCP. */
  readonly path: string;
  /** The caller's request headers as received (before the gateway removed or injected any). */
  readonly headers: IncomingHttpHeaders;
  /** Milliseconds since the epoch when the gateway received the request head. */
  readonly startedAt: number;
}

/** A new, globally unique request id (`req_` + 32 hex digits), also returned to the caller as X-Request-Id. */
export function newRequestId(): string {
  // randomUUID draws from a cached entropy pool, so this costs no syscall per request.
  const u = randomUUID();
  return `req_${u.slice(0, 8)}${u.slice(9, 13)}${u.slice(14, 18)}${u.slice(19, 23)}${u.slice(24)}`;
}
