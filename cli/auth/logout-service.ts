import type { Profiles } from '../state/profiles.js';
import { resolveClientCredentials } from './client-secret.js';
import { discoverIssuer, revokeToken, type RevokeResult } from './oidc.js';
import type { TokenStore } from './stored-tokens.js';

/** Options for {@link logout}. */
export interface LogoutOptions {
  profile: string;
  profiles: Profiles;
  store: TokenStore;
  env: NodeJS.ProcessEnv;
}

/** What logout did; a revocation result is null when no such token was held. */
export interface LogoutResult {
  removed: boolean;
  gateway?: string;
  refreshToken: RevokeResult | null;
  accessToken: RevokeResult | null;
  /** Expiry of the access token that was held, seconds since the epoch. */
  expiresAt?: number;
}

/**
 * Revoke the refresh token (ends the login at the IdP), then the access token, then delete the local
 * copy. Revocation is best effort: an unreachable IdP or one that cannot revoke JWTs is reported, and the
 * local tokens are removed regardless.
 */
export async function logout(options: LogoutOptions): Promise<LogoutResult> {
  const saved = options.profiles.get(options.profile);
  const tokens = await options.store.get(options.profile);
  if (!tokens) return { removed: false, gateway: saved?.gateway, refreshToken: null, accessToken: null };

  let refreshToken: RevokeResult | null = tokens.refreshToken ? { revoked: false, reason: 'not attempted' } : null;
  let accessToken: RevokeResult = { revoked: false, reason: 'not attempted' };
  const fail = (reason: string): void => {
    if (refreshToken) refreshToken = { revoked: false, reason };
    accessToken = { revoked: false, reason };
  };

  if (!saved?.issuer) fail('the profile does not record its identity provider');
  else {
    let clientSecret: string | undefined;
    let authMethod: 'client_secret_basic' | 'client_secret_post' | undefined;
    let usable = true;
    if (tokens.grant === 'client_credentials') {
      // A confidential client must authenticate to revoke; without its secret there is nothing to try.
      const credentials = await resolveClientCredentials({
        env: options.env,
        fallbackClientId: tokens.clientId,
        fallbackSecretFile: saved.clientSecretFile,
      }).catch(() => undefined);
      if (credentials && credentials.clientId === tokens.clientId) {
        clientSecret = credentials.clientSecret;
        authMethod = credentials.authMethod;
      } else {
        usable = false;
        fail('no client secret available to authenticate the revocation (set SLUICE_CLIENT_SECRET)');
      }
    }
    if (usable) {
      try {
        const config = await discoverIssuer({ issuer: saved.issuer, clientId: tokens.clientId, clientSecret, clientAuthMethod: authMethod });
        if (tokens.refreshToken) refreshToken = await revokeToken({ config, token: tokens.refreshToken, hint: 'refresh_token' });
        accessToken = await revokeToken({ config, token: tokens.accessToken, hint: 'access_token' });
      } catch (err) {
        fail((err as Error)?.message ?? String(err));
      }
    }
  }

  const removed = await options.store.delete(options.profile);
  return { removed, gateway: saved?.gateway, refreshToken, accessToken, expiresAt: tokens.expiresAt };
}
