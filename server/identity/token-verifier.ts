import * as jose from 'jose';
import { SluiceError, type ErrorCode } from '../../shared/errors.js';
import type { Config } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import { rolesFor, type Principal } from './principal.js';
import { checkIdentityProvider, discoverJwksUri, fetchOnceMore } from './provider-check.js';

export interface TokenVerifierOptions {
  identity: Config['identity'];
  roles: Config['roles'];
  /** Minimum time between JWKS refetches triggered by an unknown `kid`. */
  jwksCooldownMs?: number;
  /** How long a fetched JWKS is trusted before it is fetched again. */
  jwksMaxAgeMs?: number;
  /** Time budget for discovery and JWKS requests. */
  timeoutMs?: number;
  /** Verified tokens remembered (until their expiry, at most `cacheMaxAgeMs`) so repeat calls skip the signature check. Default 10 000; 0 disables. */
  cacheSize?: number;
  /** Longest time a verified token is remembered. Default 60 s. */
  cacheMaxAgeMs?: number;
  /** Milliseconds since the epoch that `exp` and `nbf` are judged against. Default `Date.now`. */
  now?: () => number;
}

export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
  /**
   * Resolves once the issuer's discovery document and keys could be fetched and fit the settings; rejects
   * with ERR_IDP_UNAVAILABLE or ERR_IDP_MISMATCH, the message naming the URL tried and what went wrong.
   */
  ready(): Promise<void>;
}

/**
 * Verifies bearer JWTs against the issuer's published keys: signature, issuer, audience, expiry (with a
 * small leeway) and an allow-list of asymmetric algorithms. Every failure is a SluiceError with its own code.
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const { identity } = options;
  const timeoutMs = options.timeoutMs ?? 5000;
  const algorithms = [...identity.algorithms];
  const clockTolerance = Math.round(parseDuration(identity.clock_tolerance) / 1000);
  const provider = { issuer: identity.issuer, algorithms, timeoutMs };
  const now = options.now ?? Date.now;
  let jwks: Promise<ReturnType<typeof jose.createRemoteJWKSet>> | undefined;
  /** The key set's URL once discovered, so a failed key fetch can say where it went. */
  let jwksUri: string | undefined;

  function keys(): Promise<ReturnType<typeof jose.createRemoteJWKSet>> {
    jwks ??= discoverJwksUri(provider).then((uri) => {
      jwksUri = uri;
      return jose.createRemoteJWKSet(new URL(uri), {
        cooldownDuration: options.jwksCooldownMs ?? 30_000,
        cacheMaxAge: options.jwksMaxAgeMs ?? 10 * 60_000,
        timeoutDuration: timeoutMs,
        [jose.customFetch]: fetchOnceMore,
      });
    });
    // A failed discovery is retried on the next request rather than cached forever.
    jwks.catch(() => (jwks = undefined));
    return jwks;
  }

  const cache = new VerifiedTokenCache(options.cacheSize ?? 10_000, options.cacheMaxAgeMs ?? 60_000, now);

  return {
    async ready() {
      // Discovery and the key set itself, so readiness means tokens can be verified now.
      await checkIdentityProvider(provider);
    },
    async verify(token) {
      const known = cache.get(token);
      if (known) return known;
      let header: jose.ProtectedHeaderParameters;
      try {
        header = jose.decodeProtectedHeader(token);
        jose.decodeJwt(token);
      } catch (cause) {
        throw new SluiceError('ERR_TOKEN_MALFORMED', { cause });
      }
      if (typeof header.alg !== 'string' || !algorithms.includes(header.alg as never)) {
        throw new SluiceError('ERR_TOKEN_ALGORITHM', {
          message: `The token is signed with ${JSON.stringify(header.alg ?? null).slice(0, 40)}; accepted: ${algorithms.join(', ')}`,
        });
      }
      let getKey: ReturnType<typeof jose.createRemoteJWKSet>;
      try {
        getKey = await keys();
      } catch (cause) {
        // Discovery says why (unreachable, or another issuer); a caller then learns which, not just "unavailable".
        throw cause instanceof SluiceError ? cause : new SluiceError('ERR_IDP_UNAVAILABLE', { cause });
      }
      let payload: jose.JWTPayload;
      try {
        ({ payload } = await jose.jwtVerify(token, getKey, {
          issuer: identity.issuer,
          audience: identity.audience,
          algorithms,
          clockTolerance,
          currentDate: new Date(now()),
          requiredClaims: ['sub', 'exp'],
        }));
      } catch (cause) {
        throw mapJoseError(cause, jwksUri);
      }
      // jose judges `iat` only together with a maximum token age; a token issued beyond the tolerance in the
      // future comes from a skewed or forging issuer and is refused like an early `nbf`.
      if (typeof payload.iat === 'number' && payload.iat > now() / 1000 + clockTolerance) {
        throw new SluiceError('ERR_TOKEN_CLAIMS', { message: 'The token claim "iat" is invalid' });
      }
      const groupsClaim = payload[identity.groups_claim];
      const groups = Array.isArray(groupsClaim) ? groupsClaim.filter((g): g is string => typeof g === 'string') : [];
      const principal: Principal = {
        sub: payload.sub!,
        email: typeof payload.email === 'string' ? payload.email : undefined,
        name: typeof payload.name === 'string' ? payload.name : undefined,
        groups,
        roles: rolesFor(groups, options.roles),
        clientId: typeof payload.client_id === 'string' ? payload.client_id : typeof payload.azp === 'string' ? payload.azp : undefined,
        expiresAt: payload.exp!,
        issuer: payload.iss!,
      };
      cache.set(token, principal);
      return principal;
    },
  };
}

/**
 * Tokens whose signature and claims were checked, keyed by the token itself. A signature check costs far
 * more than a request through the gateway; an entry never outlives the token's `exp` nor `maxAgeMs`
 * (so a rotated-out key stops being trusted within that time), and the oldest entry goes first when full.
 */
class VerifiedTokenCache {
  private readonly entries = new Map<string, { principal: Principal; until: number }>();

  constructor(
    private readonly size: number,
    private readonly maxAgeMs: number,
    private readonly now: () => number,
  ) {}

  get(token: string): Principal | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    if (this.now() >= entry.until) {
      this.entries.delete(token);
      return undefined;
    }
    return entry.principal;
  }

  set(token: string, principal: Principal): void {
    if (this.size <= 0) return;
    const until = Math.min(principal.expiresAt * 1000, this.now() + this.maxAgeMs);
    if (until <= this.now()) return;
    if (this.entries.size >= this.size) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, { principal, until });
  }
}

function mapJoseError(err: unknown, jwksUri: string | undefined): SluiceError {
  const code = (err as { code?: string }).code;
  const claim = (err as { claim?: string }).claim;
  let ours: ErrorCode;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      ours = 'ERR_TOKEN_EXPIRED';
      break;
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      ours = claim === 'iss' ? 'ERR_TOKEN_ISSUER' : claim === 'aud' ? 'ERR_TOKEN_AUDIENCE' : 'ERR_TOKEN_CLAIMS';
      break;
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      ours = 'ERR_TOKEN_KEY_UNKNOWN';
      break;
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      ours = 'ERR_TOKEN_SIGNATURE';
      break;
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      ours = 'ERR_TOKEN_ALGORITHM';
      break;
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      ours = 'ERR_TOKEN_MALFORMED';
      break;
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
      ours = 'ERR_IDP_UNAVAILABLE';
      break;
    default:
      ours = err instanceof TypeError || (err as Error)?.name === 'AbortError' ? 'ERR_IDP_UNAVAILABLE' : 'ERR_TOKEN_CLAIMS';
  }
  const detail =
    ours === 'ERR_TOKEN_CLAIMS' && claim
      ? { message: `The token claim "${claim}" is invalid` }
      : ours === 'ERR_IDP_UNAVAILABLE' && jwksUri !== undefined
        ? { message: `The identity provider cannot be reached: the JWKS at ${jwksUri} cannot be fetched (${(err as Error)?.message ?? String(err)})` }
        : {};
  return new SluiceError(ours, { ...detail, cause: err });
}
