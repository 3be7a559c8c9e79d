import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { isForwardedRequestHeader } from '../pipeline/forward-headers.js';

/** The parts of an exchange an approval is bound to. */
export interface BindableRequest {
  readonly principal: { readonly sub: string };
  readonly connection: { readonly name: string };
  readonly method: string;
  /** Path and query, as sent upstream. */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
}

function header(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : (value ?? '');
}

/**
 * Headers a client varies from one attempt of the same request to the next, left out of the binding:
 * retry counts, timeouts and client descriptions (the OpenAI and Anthropic SDKs' x-stainless-*), trace
 * context, idempotency keys, the asynchronous-answer preference itself, content negotiation (Accept: an
 * OpenAI-style API streams on the body's `stream`), and the length (the body's digest
 * covers it). Every other header the upstream receives is bound.
 */
const VOLATILE_HEADERS: ReadonlySet<string> = new Set(['user-agent', 'accept', 'traceparent', 'tracestate', 'baggage', 'idempotency-key', 'prefer', 'content-length', 'accept-encoding']);

function isVolatile(name: string): boolean {
  return VOLATILE_HEADERS.has(name) || name.startsWith('x-stainless-');
}

/**
 * What a re-send must match to use an approval given to a request answered at once: the requester, the
 * connection, the rule that asked for review, the method, the path with its query, every header the
 * upstream would receive from the caller but those that vary per attempt (Content-Type and
 * Content-Encoding included: the same bytes read otherwise are another request; an account-selection or
 * beta header changes what the upstream does), and the SHA-256 of the body bytes as sent.
 */
export function requestBinding(request: BindableRequest, rule: string, body: Buffer): string {
  const headers = Object.keys(request.headers)
    .filter((name) => isForwardedRequestHeader(name) && !isVolatile(name))
    .sort()
    .map((name) => [name, header(request.headers, name)]);
  const parts = [
    'sluice-resend-v2',
    request.principal.sub,
    request.connection.name,
    rule,
    request.method.toUpperCase(),
    request.path,
    headers,
    createHash('sha256').update(body).digest('hex'),
  ];
  // JSON keeps the fields apart: no value can end one field and begin the next.
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

/**
 * Whether the caller asked not to be held (`Prefer: respond-async`, RFC 7240). Preferences are a
 * comma-separated list of `token[=value][; params]`; tokens are case-insensitive.
 */
export function prefersRespondAsync(headers: IncomingHttpHeaders): boolean {
  const value = header(headers, 'prefer');
  if (value === '') return false;
  return value.split(',').some((pref) => pref.split(/[;=]/, 1)[0]!.trim().toLowerCase() === 'respond-async');
}
