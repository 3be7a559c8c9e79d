import type { IncomingHttpHeaders } from 'node:http';
import { isTraceContextHeader, type ExchangeTrace } from '../telemetry/trace-context.js';
import type { UpstreamTarget } from './upstream-target.js';

/**
 * Request headers the upstream never sees from the caller: hop-by-hop headers (RFC 9110 7.6.1), the
 * caller's credentials (the connection injects its own), and every header an upstream or the proxy in
 * front of it might take for the client's address, scheme or host. The gateway sets the ones it vouches
 * for (X-Forwarded-For/-Proto/-Host, X-Real-IP) and drops the rest: a caller could otherwise pass for
 * another address, past an allow-list or into someone else's rate limit, or spoof the request id. And
 * every header that overrides the request's path or method, which policy judged from the request line.
 */
const DROPPED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'host',
  'authorization',
  'cookie',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-server',
  'x-forwarded-scheme',
  'x-forwarded-ssl',
  'x-forwarded-prefix',
  'x-forwarded',
  'forwarded-for',
  'x-original-forwarded-for',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
  'x-envoy-external-address',
  'x-original-host',
  'x-host',
  'x-url-scheme',
  'front-end-https',
  'x-request-id',
  // Headers some frameworks and rewrite modules route on instead of the request line (IIS URL Rewrite,
  // Symfony, Zend, method-override middleware): the upstream must act on the path and method policy judged.
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-forwarded-uri',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-method',
]);

/** Hop-by-hop response headers; Node's ServerResponse frames the body itself. */
const DROPPED_RESPONSE_HEADERS: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'te', 'transfer-encoding', 'upgrade', 'x-request-id']);

/**
 * Fields a trailer must not carry (RFC 9110 6.5.1): framing, routing, content description and credentials
 * are settled by the head, and a late one would contradict it. Hop-by-hop ones go as in the head.
 */
const DROPPED_TRAILERS: ReadonlySet<string> = new Set([
  ...DROPPED_RESPONSE_HEADERS,
  'trailer',
  'content-length',
  'content-encoding',
  'content-type',
  'content-range',
  'host',
  'authorization',
  'set-cookie',
]);

/** What the gateway adds to every forwarded request. */
export interface ForwardingFacts {
  readonly requestId: string;
  readonly clientAddress: string;
  readonly proto: 'http' | 'https';
  /** The gateway's trace context, sent in place of the caller's; absent, the caller's `traceparent` goes as sent. */
  readonly trace?: ExchangeTrace;
}

/** Whether a caller's request header is forwarded upstream (before the connection's own are injected). */
export function isForwardedRequestHeader(name: string, connectionTokens?: ReadonlySet<string>): boolean {
  return !(
    DROPPED_REQUEST_HEADERS.has(name) ||
    name.startsWith('proxy-') ||
    // The gateway's own request headers (x-sluice-resend-of) are for the gateway, not the upstream.
    name.startsWith('x-sluice-') ||
    (connectionTokens !== undefined && connectionTokens.has(name))
  );
}

/** The headers sent upstream, as a flat [name, value, ...] list (undici takes it without copying). */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, target: UpstreamTarget, facts: ForwardingFacts): string[] {
  const out: string[] = [];
  const named = headers.connection === undefined ? undefined : connectionTokens(headers.connection);
  for (const name in headers) {
    if (!isForwardedRequestHeader(name, named) || target.injectedNames.has(name)) continue;
    if (facts.trace !== undefined && isTraceContextHeader(name)) continue;
    pushHeader(out, name, headers[name]);
  }
  if (facts.trace !== undefined) {
    out.push('traceparent', facts.trace.traceparent);
    if (facts.trace.tracestate !== undefined) out.push('tracestate', facts.trace.tracestate);
  }
  // TE is hop-by-hop, but "trailers" says the caller reads trailers: the upstream (a gRPC server) may need to
  // hear it to send them. Only that value goes on; transfer codings are this hop's business.
  if (headers.te !== undefined && acceptsTrailers(headers.te)) out.push('te', 'trailers');
  out.push('host', target.host, 'x-forwarded-for', facts.clientAddress, 'x-real-ip', facts.clientAddress, 'x-forwarded-proto', facts.proto, 'x-request-id', facts.requestId);
  if (headers.host !== undefined) out.push('x-forwarded-host', headers.host);
  for (let i = 0; i < target.injected.length; i++) out.push(target.injected[i]!);
  return out;
}

/**
 * The headers returned to the caller, flat, with the gateway's X-Request-Id; the upstream's own request
 * id is kept as X-Upstream-Request-Id. `rewritten` when masking rewrites the body, which then goes out
 * decoded and without a length: Content-Length and Content-Encoding no longer describe it.
 */
export function callerResponseHeaders(headers: IncomingHttpHeaders, requestId: string, rewritten: boolean): string[] {
  const out: string[] = [];
  const named = headers.connection === undefined ? undefined : connectionTokens(headers.connection);
  for (const name in headers) {
    if (!isCallerResponseHeader(name) || (named !== undefined && named.has(name))) continue;
    if (rewritten && (name === 'content-length' || name === 'content-encoding')) continue;
    pushHeader(out, name, headers[name]);
  }
  const upstreamId = headers['x-request-id'];
  if (typeof upstreamId === 'string') out.push('x-upstream-request-id', upstreamId);
  out.push('x-request-id', requestId);
  return out;
}

/** Whether an upstream's response header reaches the caller (before a Connection header's own list is applied). */
export function isCallerResponseHeader(name: string): boolean {
  return !DROPPED_RESPONSE_HEADERS.has(name) && !name.startsWith('proxy-');
}

/** The upstream's trailers as the caller gets them: without the fields a trailer may not carry. */
export function callerTrailers(trailers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in trailers) {
    const value = trailers[name];
    if (value === undefined || DROPPED_TRAILERS.has(name) || name.startsWith('proxy-')) continue;
    out[name] = value;
  }
  return out;
}

/** Whether a TE header lists the "trailers" token. */
function acceptsTrailers(value: string | string[]): boolean {
  for (const part of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    if (part.trim().toLowerCase() === 'trailers') return true;
  }
  return false;
}

function pushHeader(out: string[], name: string, value: string | string[] | undefined): void {
  if (value === undefined) return;
  if (typeof value === 'string') {
    out.push(name, value);
  } else {
    for (const v of value) out.push(name, v);
  }
}

/** Header names listed in a Connection header, which are hop-by-hop for this message only. */
function connectionTokens(value: string | string[]): Set<string> | undefined {
  // Nearly every client sends just one of these two, which name no other header.
  if (typeof value === 'string' && (value.length === 10 || value.length === 5)) {
    const lower = value.toLowerCase();
    if (lower === 'keep-alive' || lower === 'close') return undefined;
  }
  const set = new Set<string>();
  for (const part of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const token = part.trim().toLowerCase();
    if (token !== '') set.add(token);
  }
  return set;
}
