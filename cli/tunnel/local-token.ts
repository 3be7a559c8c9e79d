import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { HeaderLine } from './http-head.js';

/** The prefix of local tokens, so one found in a log or a notebook is recognisable for what it is. */
export const LOCAL_TOKEN_PREFIX = 'sl_local_';

/** Headers that may carry the local token; both are removed before a request enters the tunnel. */
export const LOCAL_TOKEN_HEADERS: ReadonlySet<string> = new Set(['authorization', 'x-api-key']);

/** A fresh secret for one local listener: 256 random bits, base64url. */
export function newLocalToken(): string {
  return `${LOCAL_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/**
 * True when a request carries the token as `Authorization: Bearer <token>` (what the OpenAI SDKs send from
 * their API key) or `X-Api-Key: <token>` (the Anthropic SDKs). Compared in constant time over SHA-256
 * digests, so neither the token's bytes nor its length leak through timing.
 */
export function carriesLocalToken(headers: readonly HeaderLine[], token: string): boolean {
  return localTokenCheck(token)(headers);
}

/**
 * `carriesLocalToken` for one token, its digest taken once: a local connection checks every request it
 * carries, and the token does not change while it lives.
 */
export function localTokenCheck(token: string): (headers: readonly HeaderLine[]) => boolean {
  const expected = digest(token);
  return (headers) => matches(headers, expected);
}

function matches(headers: readonly HeaderLine[], expected: Buffer): boolean {
  let found = false;
  for (const h of headers) {
    let candidate: string | undefined;
    if (h.name === 'authorization') candidate = /^bearer +(\S+)$/i.exec(h.value)?.[1];
    else if (h.name === 'x-api-key') candidate = h.value;
    // Every candidate is compared, a match or not, so the number of compares does not depend on the secret.
    if (candidate !== undefined && timingSafeEqual(digest(candidate), expected)) found = true;
  }
  return found;
}

function digest(value: string): Buffer {
  // One call per request rather than a Hash object; as UTF-8, two strings digest alike only when they are equal
  // (the token is ASCII), which latin1 did not promise for characters past U+00FF.
  return hash('sha256', value, 'buffer');
}
