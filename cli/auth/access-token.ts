import * as jose from 'jose';
import { SluiceError } from '../../shared/errors.js';
import { configDir } from '../state/paths.js';
import { openProfiles, type Profile, type Profiles } from '../state/profiles.js';
import { checkProfileName } from '../state/profile-name.js';
import { resolveClientCredentials } from './client-secret.js';
import { openLocalState } from './local-state.js';
import { clientCredentialsGrant, discoverIssuer, refreshGrant, toStoredTokens } from './oidc.js';
import { checkSecureUrl } from './secure-url.js';
import type { StoredTokens, TokenStore } from './stored-tokens.js';

/** A token the gateway should accept, and which gateway it is for. */
export interface AccessToken {
  token: string;
  /** Gateway base URL, without a trailing slash. */
  gateway: string;
  /** Seconds since the epoch, when known. */
  expiresAt?: number;
  /** env: `SLUICE_TOKEN`; stored: as saved; refreshed: refresh-token grant; renewed: client-credentials grant again. */
  source: 'env' | 'stored' | 'refreshed' | 'renewed';
  profile: string;
}

/** Options for {@link getAccessToken}. */
export interface GetAccessTokenOptions {
  profile: string;
  env: NodeJS.ProcessEnv;
  /** Config directory; defaults to `$XDG_CONFIG_HOME/sluice`. */
  dir?: string;
  /** Already-open state (commands that opened it pass it to avoid a second keychain probe). */
  profiles?: Profiles;
  store?: TokenStore;
  /** Refresh when the token expires within this many seconds. Default 60. */
  minValiditySeconds?: number;
  /** Refresh or renew even when the token is still fresh (a long-running tunnel re-authenticating). */
  forceRefresh?: boolean;
  /** Clock in milliseconds; tests may pin it. */
  now?: () => number;
}

/** How close to expiry a token is refreshed. */
export const DEFAULT_MIN_VALIDITY_SECONDS = 60;

/**
 * A usable bearer token for the profile's gateway. `SLUICE_TOKEN` wins (with `SLUICE_GATEWAY` or the
 * profile's gateway); otherwise the stored token, refreshed (device logins) or renewed (client
 * credentials) when it is within `minValiditySeconds` of expiry, and saved again. With a saved login,
 * `SLUICE_GATEWAY` (which `--gateway` sets) must name the profile's gateway: its token is never sent elsewhere.
 * Throws ERR_NOT_LOGGED_IN without a login and ERR_REFRESH_FAILED when the IdP refuses the refresh; both
 * name the exact login command to run.
 */
export async function getAccessToken(options: GetAccessTokenOptions): Promise<AccessToken> {
  const profile = checkProfileName(options.profile);
  const env = options.env;
  const nowMs = options.now ?? Date.now;

  const envToken = env.SLUICE_TOKEN?.trim();
  if (envToken) {
    const profiles = options.profiles ?? (await openLocalProfiles(options));
    const gatewayValue = env.SLUICE_GATEWAY?.trim() || profiles.get(profile)?.gateway;
    if (!gatewayValue) {
      throw new SluiceError('ERR_USAGE', {
        message: `SLUICE_TOKEN is set but no gateway is known for profile "${profile}": set SLUICE_GATEWAY or run \`sluice login --gateway URL\``,
      });
    }
    const gateway = normalizeGateway(gatewayValue, env.SLUICE_GATEWAY ? 'SLUICE_GATEWAY' : `profile "${profile}"`);
    return { token: envToken, gateway, expiresAt: jwtExpiry(envToken), source: 'env', profile };
  }

  const state = options.profiles && options.store ? { profiles: options.profiles, store: options.store } : await openLocalState({ env, dir: options.dir });
  const saved = state.profiles.get(profile);
  const tokens = await state.store.get(profile);
  const asked = env.SLUICE_GATEWAY?.trim() ? normalizeGateway(env.SLUICE_GATEWAY, 'SLUICE_GATEWAY') : undefined;
  if (!saved || !tokens) {
    // A saved profile remembers its gateway, so `login` alone does; a gateway asked for is named.
    const command = loginCommand(profile, asked);
    throw new SluiceError('ERR_NOT_LOGGED_IN', {
      message: profile === 'default' ? `Not logged in: run \`${command}\`` : `Not logged in with profile "${profile}": run \`${command}\``,
    });
  }
  const gateway = saved.gateway;
  if (asked !== undefined && asked !== gateway) {
    throw new SluiceError('ERR_USAGE', {
      message:
        `Profile "${profile}" is logged in to ${gateway}, not ${asked} (given by --gateway or SLUICE_GATEWAY); its token is not sent to another gateway. ` +
        `Leave --gateway out, or log in there under a profile of its own: \`sluice --profile NAME login --gateway ${asked}\``,
    });
  }
  const login = loginCommand(profile, gateway, tokens.grant === 'client_credentials');
  const minValidity = options.minValiditySeconds ?? DEFAULT_MIN_VALIDITY_SECONDS;
  const nowSeconds = Math.floor(nowMs() / 1000);
  const fresh = (t: StoredTokens): boolean => t.expiresAt === undefined || t.expiresAt - nowSeconds > minValidity;
  if (!options.forceRefresh && fresh(tokens)) {
    return { token: tokens.accessToken, gateway, expiresAt: tokens.expiresAt, source: 'stored', profile };
  }

  const stillValid = tokens.expiresAt !== undefined && tokens.expiresAt > nowSeconds;
  try {
    const renewed = await renew({ profileName: profile, profile: saved, tokens, env, nowSeconds, login });
    await state.store.set(profile, renewed.tokens);
    return { token: renewed.tokens.accessToken, gateway, expiresAt: renewed.tokens.expiresAt, source: renewed.source, profile };
  } catch (err) {
    // Another sluice process may have refreshed first and rotated the refresh token we used.
    const latest = await state.store.get(profile).catch(() => undefined);
    if (latest && latest.accessToken !== tokens.accessToken && fresh(latest)) {
      return { token: latest.accessToken, gateway, expiresAt: latest.expiresAt, source: 'stored', profile };
    }
    // An unreachable IdP is no reason to drop a token the gateway still accepts.
    if (err instanceof SluiceError && err.code === 'ERR_IDP_UNAVAILABLE' && stillValid) {
      return { token: tokens.accessToken, gateway, expiresAt: tokens.expiresAt, source: 'stored', profile };
    }
    // The provider's refusal says to log in again; which profile and gateway is ours to say.
    if (err instanceof SluiceError && err.code === 'ERR_REFRESH_FAILED' && !err.message.includes(login)) {
      throw new SluiceError('ERR_REFRESH_FAILED', { message: `${err.message.replace(/:? run `sluice login` again$/, '')}: run \`${login}\` again`, details: err.details, cause: err });
    }
    throw err;
  }
}

interface RenewOptions {
  profileName: string;
  profile: Profile;
  tokens: StoredTokens;
  env: NodeJS.ProcessEnv;
  nowSeconds: number;
  /** The exact command that logs this profile in again. */
  login: string;
}

async function renew(options: RenewOptions): Promise<{ tokens: StoredTokens; source: 'refreshed' | 'renewed' }> {
  const { profile, tokens, env } = options;
  if (!profile.issuer || !profile.audience) {
    throw new SluiceError('ERR_REFRESH_FAILED', {
      message: `Profile "${options.profileName}" does not record its issuer and audience: run \`${options.login}\` again`,
    });
  }
  if (tokens.grant === 'client_credentials') {
    const credentials = await resolveClientCredentials({
      env,
      fallbackClientId: tokens.clientId,
      fallbackSecretFile: profile.clientSecretFile,
    });
    if (!credentials) {
      throw new SluiceError('ERR_REFRESH_FAILED', {
        message:
          'The client-credentials token is about to expire and no client secret is available to renew it: ' +
          `set SLUICE_CLIENT_SECRET or run \`${options.login}\` again`,
      });
    }
    const config = await discoverIssuer({
      issuer: profile.issuer,
      clientId: credentials.clientId,
      clientSecret: credentials.clientSecret,
      clientAuthMethod: credentials.authMethod,
    });
    const response = await clientCredentialsGrant({ config, audience: profile.audience }).catch((err: unknown) => {
      if (err instanceof SluiceError && err.code === 'ERR_LOGIN_FAILED') {
        throw new SluiceError('ERR_REFRESH_FAILED', { message: `Renewing the client-credentials token failed: ${err.message}: run \`${options.login}\` again`, cause: err });
      }
      throw err;
    });
    return {
      tokens: toStoredTokens(response, { grant: 'client_credentials', clientId: credentials.clientId, now: options.nowSeconds }),
      source: 'renewed',
    };
  }
  if (!tokens.refreshToken) {
    throw new SluiceError('ERR_REFRESH_FAILED', { message: `The login has no refresh token: run \`${options.login}\` again` });
  }
  const config = await discoverIssuer({ issuer: profile.issuer, clientId: tokens.clientId });
  const response = await refreshGrant({ config, refreshToken: tokens.refreshToken, audience: profile.audience });
  return {
    tokens: toStoredTokens(response, { grant: tokens.grant, clientId: tokens.clientId, previous: tokens, now: options.nowSeconds }),
    source: 'refreshed',
  };
}

/**
 * The command that logs a profile in: `sluice --profile bob login --gateway https://…` (no `--profile` for
 * the default one, `--client-credentials` for a CI login), so an error can say exactly what to run.
 */
export function loginCommand(profile: string, gateway: string | undefined, clientCredentials = false): string {
  return ['sluice', ...(profile === 'default' ? [] : ['--profile', profile]), 'login', ...(clientCredentials ? ['--client-credentials'] : []), ...(gateway === undefined ? [] : ['--gateway', gateway])].join(' ');
}

/** Parse and check a gateway URL (https, or http on loopback), without a trailing slash. */
export function normalizeGateway(value: string, source?: string): string {
  const { url } = checkSecureUrl(value.trim(), { what: 'gateway', source });
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function jwtExpiry(token: string): number | undefined {
  try {
    const exp = jose.decodeJwt(token).exp;
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined; // opaque tokens carry no readable expiry
  }
}

// SLUICE_TOKEN needs only the profile's gateway, so it skips the keychain probe.
function openLocalProfiles(options: GetAccessTokenOptions): Promise<Profiles> {
  return openProfiles({ dir: options.dir ?? configDir({ env: options.env }) });
}
