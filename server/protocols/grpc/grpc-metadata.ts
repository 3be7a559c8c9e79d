import type { IncomingHttpHeaders } from 'node:http';
import { callerTrailers, isCallerResponseHeader, isForwardedRequestHeader } from '../../pipeline/forward-headers.js';

/**
 * Headers that belong to one HTTP/2 hop, never forwarded: the connection-specific ones HTTP/2 forbids
 * (RFC 9113 8.2.2), and the length of a body the gateway may rewrite.
 */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host', 'content-length', 'http2-settings']);

/** Credentials are the gateway's: the caller's never reach the upstream, which gets the connection's `metadata` instead. */
const CALLER_CREDENTIALS = new Set(['authorization', 'proxy-authorization', 'cookie']);

/** The status a call ends with, which a response head carries only in a trailers-only answer. */
export const STATUS_TRAILERS = new Set(['grpc-status', 'grpc-message', 'grpc-status-details-bin']);

/** The headers as the recording and policy see a call: without HTTP/2 pseudo-headers. */
export function withoutPseudoHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (!name.startsWith(':') && value !== undefined) out[name] = value;
  return out;
}

/** Copies `headers` without pseudo-headers, hop-by-hop headers and what `keep` refuses; names lower-case, as HTTP/2 has them. */
export function forwardableMetadata(headers: IncomingHttpHeaders, keep: (name: string) => boolean = () => true): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || HOP_HEADERS.has(name) || !keep(name)) continue;
    out[name] = value;
  }
  return out;
}

/**
 * The caller's metadata as the upstream may receive it: what the HTTP path drops (credentials, the client
 * address, scheme and host a caller could claim, method overrides, the gateway's own `x-sluice-*`), and
 * its deadline, which the gateway sends as the time left of it (one it cannot read is not passed on for
 * the upstream to read differently).
 */
export function upstreamMetadata(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  return forwardableMetadata(headers, (name) => name !== 'grpc-timeout' && isForwardedRequestHeader(name));
}

/** The upstream's response head as the caller gets it: without what the HTTP path drops from a response head. */
export function callerMetadata(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  return forwardableMetadata(headers, isCallerResponseHeader);
}

/** The upstream's trailers as the caller gets them: without what a trailer may not carry (credentials, cookies), as on HTTP. */
export function callerTrailingMetadata(trailers: IncomingHttpHeaders): Record<string, string | string[]> {
  return forwardableMetadata(callerTrailers(trailers));
}

/** Metadata as policy sees it (`request.grpc.metadata`): lower-case keys, binary (`-bin`) and credential entries left out. */
export function policyMetadata(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || name.endsWith('-bin') || CALLER_CREDENTIALS.has(name)) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** Splits a trailers-only head into the head proper and the status it carries. */
export function splitStatus(headers: IncomingHttpHeaders): { head: IncomingHttpHeaders; status: IncomingHttpHeaders | undefined } {
  if (headers['grpc-status'] === undefined) return { head: headers, status: undefined };
  const head: IncomingHttpHeaders = {};
  const status: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (STATUS_TRAILERS.has(name)) status[name] = value;
    else head[name] = value;
  }
  return { head, status };
}

/** The `:path` of a gRPC call: `/package.Service/Method`. */
const CALL_PATH = /^\/([A-Za-z_][A-Za-z0-9_.]*)\/([A-Za-z_][A-Za-z0-9_]*)$/;

/** Service and method of a call path; undefined when it is not one. */
export function splitCallPath(path: string): { readonly service: string; readonly method: string } | undefined {
  const m = CALL_PATH.exec(path);
  return m === null ? undefined : { service: m[1]!, method: m[2]! };
}
