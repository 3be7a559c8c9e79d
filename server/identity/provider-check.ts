import { SluiceError } from '../../shared/errors.js';

/** What checking the identity provider needs: the `identity` settings it is held against. */
export interface ProviderCheckOptions {
  /** `identity.issuer`, exactly as configured. */
  readonly issuer: string;
  /** `identity.algorithms`. */
  readonly algorithms: readonly string[];
  /** Time budget of each request. Default 5 s. */
  readonly timeoutMs?: number;
  /** Default {@link fetchOnceMore}. */
  readonly fetch?: typeof fetch;
}

/** The provider as the check found it. */
export interface ProviderFacts {
  readonly discoveryUrl: string;
  readonly jwksUri: string;
  /** Keys the gateway can verify tokens with: published for signing, in an algorithm of `identity.algorithms`. */
  readonly usableKeys: number;
}

const DEFAULT_TIMEOUT_MS = 5000;

/** Algorithms a JWK without `alg` can sign with, by key type and curve (RFC 7518, RFC 8037). */
const RSA_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const EC_ALGORITHMS: Readonly<Record<string, string>> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };

/** `<issuer>/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4). */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
}

/**
 * Reads the discovery document and returns its `jwks_uri`. Throws ERR_IDP_UNAVAILABLE when it cannot be
 * fetched (network, timeout, 5xx: may pass) and ERR_IDP_MISMATCH when it was fetched but does not fit the
 * settings (another issuer, 4xx, no `jwks_uri`: will not pass by waiting). Messages name the URL.
 */
export async function discoverJwksUri(options: ProviderCheckOptions): Promise<string> {
  const url = discoveryUrl(options.issuer);
  const doc = await fetchJson(url, 'the discovery document', options);
  const named = (doc as { issuer?: unknown }).issuer;
  if (named !== options.issuer) {
    // Tokens carry the provider's spelling in `iss` and verification compares it byte for byte.
    const slashOnly = typeof named === 'string' && named.replace(/\/$/, '') === options.issuer.replace(/\/$/, '');
    throw mismatch(
      `identity.issuer is "${options.issuer}" but the discovery document at ${url} names the issuer ${JSON.stringify(named ?? null)}` +
        `${slashOnly ? ' (they differ by a trailing slash)' : ''}: tokens carry the provider's value in "iss", so set identity.issuer to it exactly`,
      url,
    );
  }
  const jwksUri = (doc as { jwks_uri?: unknown }).jwks_uri;
  if (typeof jwksUri !== 'string' || !URL.canParse(jwksUri)) throw mismatch(`The discovery document at ${url} has no jwks_uri`, url);
  return jwksUri;
}

/**
 * Fetches discovery and the key set and checks them against `identity`: the issuer the document names,
 * a key set that answers, holds keys, and holds one for an algorithm the gateway accepts. The same
 * check backs `serve --check`, the start and `/readyz`, so all three say the same thing.
 */
export async function checkIdentityProvider(options: ProviderCheckOptions): Promise<ProviderFacts> {
  const jwksUri = await discoverJwksUri(options);
  const set = await fetchJson(jwksUri, 'the JWKS', options);
  const keys = (set as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) throw mismatch(`The JWKS at ${jwksUri} has no "keys" array`, jwksUri);
  if (keys.length === 0) throw mismatch(`The JWKS at ${jwksUri} publishes no keys`, jwksUri);
  const usable = keys.filter((k) => isSigningKey(k) && keyAlgorithms(k).some((a) => options.algorithms.includes(a)));
  if (usable.length === 0) {
    throw mismatch(
      `The JWKS at ${jwksUri} has no signing key for identity.algorithms (${options.algorithms.join(', ')}); it publishes ${keys.map(describeKey).join(', ')}`,
      jwksUri,
    );
  }
  return { discoveryUrl: discoveryUrl(options.issuer), jwksUri, usableKeys: usable.length };
}

async function fetchJson(url: string, what: string, options: ProviderCheckOptions): Promise<object> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let res: Response;
  try {
    res = await (options.fetch ?? fetchOnceMore)(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
  } catch (cause) {
    const reason = (cause as Error)?.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : fetchFailure(cause);
    throw new SluiceError('ERR_IDP_UNAVAILABLE', { message: `The identity provider cannot be reached: ${what} at ${url} cannot be fetched (${reason})`, details: { url }, cause });
  }
  // A provider that is down or overloaded answers 5xx or 429; any other refusal will not pass by waiting.
  if (res.status >= 500 || res.status === 429) {
    await res.body?.cancel().catch(() => undefined);
    throw new SluiceError('ERR_IDP_UNAVAILABLE', { message: `The identity provider cannot be reached: ${what} at ${url} answered HTTP ${res.status}`, details: { url } });
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    const hint = what === 'the discovery document' ? ` (is identity.issuer "${options.issuer}" the provider's issuer URL?)` : '';
    throw mismatch(`${capitalise(what)} at ${url} answered HTTP ${res.status}${hint}`, url);
  }
  let text: string;
  try {
    text = await res.text();
  } catch (cause) {
    throw new SluiceError('ERR_IDP_UNAVAILABLE', { message: `The identity provider cannot be reached: ${what} at ${url} broke off (${fetchFailure(cause)})`, details: { url }, cause });
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw mismatch(`${capitalise(what)} at ${url} is not JSON`, url);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw mismatch(`${capitalise(what)} at ${url} is not a JSON object`, url);
  return body;
}

/** undici reports the reason in `cause`: `ECONNREFUSED`, `ENOTFOUND`, a TLS error. */
function fetchFailure(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
}

function mismatch(message: string, url: string): SluiceError {
  return new SluiceError('ERR_IDP_MISMATCH', { message, details: { url } });
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function isSigningKey(key: unknown): key is Record<string, unknown> {
  if (key === null || typeof key !== 'object') return false;
  const { use, key_ops: ops } = key as { use?: unknown; key_ops?: unknown };
  if (use !== undefined && use !== 'sig') return false;
  return ops === undefined || (Array.isArray(ops) && ops.includes('verify'));
}

/** The algorithms a key may verify: its `alg`, else what its type and curve allow. */
function keyAlgorithms(key: Record<string, unknown>): string[] {
  if (typeof key.alg === 'string') return [key.alg];
  if (key.kty === 'RSA') return RSA_ALGORITHMS;
  if (key.kty === 'EC' && typeof key.crv === 'string' && EC_ALGORITHMS[key.crv] !== undefined) return [EC_ALGORITHMS[key.crv]!];
  if (key.kty === 'OKP' && (key.crv === 'Ed25519' || key.crv === 'Ed448')) return ['EdDSA'];
  return [];
}

function describeKey(key: unknown): string {
  if (key === null || typeof key !== 'object') return 'a malformed entry';
  const k = key as Record<string, unknown>;
  const parts = [typeof k.kid === 'string' ? `kid "${k.kid.slice(0, 64)}"` : 'a key without kid'];
  const facts = [typeof k.alg === 'string' ? k.alg : `kty ${String(k.kty)}${typeof k.crv === 'string' ? ` ${k.crv}` : ''}`];
  if (k.use !== undefined && k.use !== 'sig') facts.push(`use ${String(k.use)}`);
  return `${parts[0]} (${facts.join(', ')})`;
}

/**
 * `fetch`, tried once more at once when it fails on the network: a TypeError, not an HTTP status nor the
 * time budget running out (the retry shares the first try's signal, so it never extends that budget).
 * A keep-alive connection that the provider or a load balancer closed while it sat idle in the pool fails
 * the next request sent on it ("other side closed"); undici drops that socket, so the second try dials a
 * new connection and a provider that merely restarted is not reported unreachable. A provider that is
 * really down fails the second try too, and that error surfaces as it would have. Every fetch of the
 * provider goes through it (the start's check, `serve --check`, `/readyz`, the key set), so all say the same.
 */
export const fetchOnceMore: typeof fetch = async (input, init) => {
  try {
    return await fetch(input, init);
  } catch (err) {
    // Only reads are tried again: a request that changes something may have been received before it failed.
    if (!(err instanceof TypeError) || init?.signal?.aborted || (init?.method ?? 'GET') !== 'GET') throw err;
    return fetch(input, init);
  }
};
