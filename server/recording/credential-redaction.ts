import type { IncomingHttpHeaders } from 'node:http';

/** Headers that carry credentials: recorded as present, never with their value. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'api-key',
  'x-auth-token',
  'x-goog-api-key',
]);

/** Query parameters that carry credentials by convention. */
const CREDENTIAL_PARAMS = /^(api[-_]?key|key|token|access[-_]?token|auth|secret|password|sig|signature|code)$/i;

/** What a removed value is recorded as. */
export const REMOVED = '[removed]';

/** Headers as recorded: credential values replaced by `[removed]`, so an auditor sees that one was sent. */
export function recordableHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    out[name] = CREDENTIAL_HEADERS.has(name) ? (Array.isArray(value) ? value.map(() => REMOVED) : REMOVED) : value;
  }
  return out;
}

/** Splits a request target into path and query, with credential-like query values replaced by `[removed]`. */
export function recordableTarget(target: string): { path: string; query?: string } {
  const q = target.indexOf('?');
  if (q < 0) return { path: target };
  const query = target
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq < 0 ? pair : pair.slice(0, eq);
      let decoded = name;
      try {
        decoded = decodeURIComponent(name);
      } catch {
        // A malformed escape is recorded as sent.
      }
      return eq >= 0 && CREDENTIAL_PARAMS.test(decoded) ? `${name}=${REMOVED}` : pair;
    })
    .join('&');
  return { path: target.slice(0, q), query };
}
