import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

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
 * What a re-send must match to use an approval given to a request answered at once: the requester, the
 * connection, the rule that asked for review, the method, the path with its query, how the body is labelled
 * and coded (Content-Type, Content-Encoding: the same bytes read otherwise are another request), and the
 * SHA-256 of the body bytes as sent. Other headers are left out: SDKs vary them per attempt (retry counts,
 * trace ids), and the upstream credential is the gateway's own.
 */
export function requestBinding(request: BindableRequest, rule: string, body: Buffer): string {
  const parts = [
    'sluice-resend-v1',
    request.principal.sub,
    request.connection.name,
    rule,
    request.method.toUpperCase(),
    request.path,
    header(request.headers, 'content-type'),
    header(request.headers, 'content-encoding'),
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
