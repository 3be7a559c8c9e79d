import * as client from 'openid-client';
import * as jose from 'jose';
import { SluiceError, type ErrorCode } from '../../shared/errors.js';
import { checkSecureUrl } from './secure-url.js';
import type { GrantKind, StoredTokens } from './stored-tokens.js';

/** Scopes a device-code login asks for: identity claims plus a refresh token. */
export const DEVICE_SCOPE = 'openid profile email offline_access';

/** How a confidential (CI) client authenticates at the token endpoint. */
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post';

/** Options for {@link discoverIssuer}. */
export interface DiscoverIssuerOptions {
  issuer: string;
  clientId: string;
  /** A confidential client's secret; absent for the CLI's public client. */
  clientSecret?: string;
  /** Default `client_secret_post`, openid-client's own default. */
  clientAuthMethod?: ClientAuthMethod;
  /** Per-request time budget in seconds (openid-client's default is 30). */
  timeoutSeconds?: number;
}

/** Fetch the issuer's discovery document and build an openid-client configuration for one client. */
export async function discoverIssuer(options: DiscoverIssuerOptions): Promise<client.Configuration> {
  const { url, insecureLoopback } = checkSecureUrl(options.issuer, { what: 'issuer' });
  let auth: client.ClientAuth;
  if (options.clientSecret === undefined) auth = client.None();
  else if (options.clientAuthMethod === 'client_secret_basic') auth = client.ClientSecretBasic(options.clientSecret);
  else auth = client.ClientSecretPost(options.clientSecret);
  try {
    return await client.discovery(url, options.clientId, undefined, auth, {
      // openid-client refuses http by design; a dev IdP on loopback is the one place it is harmless.
      execute: insecureLoopback ? [client.allowInsecureRequests] : [],
      timeout: options.timeoutSeconds,
    });
  } catch (err) {
    throw oidcError(err, { step: 'discovery', issuer: options.issuer });
  }
}

/** Options for {@link startDeviceAuthorization}. */
export interface StartDeviceOptions {
  config: client.Configuration;
  /** The gateway's audience, sent as the `resource` indicator so the access token is minted for it. */
  audience: string;
  scope?: string;
}

/** Ask the IdP for a device code and the URL the user opens to approve it. */
export async function startDeviceAuthorization(options: StartDeviceOptions): Promise<client.DeviceAuthorizationResponse> {
  try {
    return await client.initiateDeviceAuthorization(options.config, {
      scope: options.scope ?? DEVICE_SCOPE,
      resource: options.audience,
    });
  } catch (err) {
    throw oidcError(err, { step: 'device', issuer: issuerOf(options.config) });
  }
}

/** Options for {@link pollDeviceAuthorization}. */
export interface PollDeviceOptions {
  config: client.Configuration;
  authorization: client.DeviceAuthorizationResponse;
  audience: string;
  /**
   * Seconds between polls, replacing the server's announced interval (which openid-client otherwise uses,
   * 5 s when none is announced); a `slow_down` answer still adds 5 s as RFC 8628 requires.
   */
  intervalSeconds?: number;
  /** Stops polling; the default stops when the device code expires. */
  signal?: AbortSignal;
}

/** Poll the token endpoint until the user approves, denies, or the code expires. */
export async function pollDeviceAuthorization(options: PollDeviceOptions): Promise<client.TokenEndpointResponse> {
  const authorization =
    options.intervalSeconds === undefined ? options.authorization : { ...options.authorization, interval: options.intervalSeconds };
  try {
    return await client.pollDeviceAuthorizationGrant(options.config, authorization, { resource: options.audience }, { signal: options.signal });
  } catch (err) {
    throw oidcError(err, { step: 'device', issuer: issuerOf(options.config) });
  }
}

/** Options for {@link clientCredentialsGrant}. */
export interface ClientCredentialsOptions {
  config: client.Configuration;
  audience: string;
  scope?: string;
}

/** Run the client-credentials grant for the gateway's audience (CI logins and their renewal). */
export async function clientCredentialsGrant(options: ClientCredentialsOptions): Promise<client.TokenEndpointResponse> {
  const parameters: Record<string, string> = { resource: options.audience };
  if (options.scope) parameters.scope = options.scope;
  try {
    return await client.clientCredentialsGrant(options.config, parameters);
  } catch (err) {
    throw oidcError(err, { step: 'client_credentials', issuer: issuerOf(options.config) });
  }
}

/** Options for {@link refreshGrant}. */
export interface RefreshOptions {
  config: client.Configuration;
  refreshToken: string;
  audience: string;
}

/** Trade a refresh token for fresh tokens; a refusal is ERR_REFRESH_FAILED. */
export async function refreshGrant(options: RefreshOptions): Promise<client.TokenEndpointResponse> {
  try {
    return await client.refreshTokenGrant(options.config, options.refreshToken, { resource: options.audience });
  } catch (err) {
    throw oidcError(err, { step: 'refresh', issuer: issuerOf(options.config) });
  }
}

/** Options for {@link revokeToken}. */
export interface RevokeOptions {
  config: client.Configuration;
  token: string;
  hint: 'refresh_token' | 'access_token';
}

/** The outcome of one revocation attempt; never throws, logout is best effort. */
export type RevokeResult = { revoked: true } | { revoked: false; reason: string };

/** Revoke a token at the IdP (RFC 7009), reporting rather than throwing when the IdP cannot or will not. */
export async function revokeToken(options: RevokeOptions): Promise<RevokeResult> {
  if (!options.config.serverMetadata().revocation_endpoint) {
    return { revoked: false, reason: 'the identity provider announces no revocation endpoint' };
  }
  try {
    await client.tokenRevocation(options.config, options.token, { token_type_hint: options.hint });
    return { revoked: true };
  } catch (err) {
    if (err instanceof client.ResponseBodyError) {
      return { revoked: false, reason: `${err.error}${err.error_description ? `: ${err.error_description}` : ''}` };
    }
    return { revoked: false, reason: (err as Error)?.message ?? String(err) };
  }
}

/** Options for {@link toStoredTokens}. */
export interface ToStoredTokensOptions {
  grant: GrantKind;
  clientId: string;
  /** Tokens being replaced: a refresh response may omit the refresh or id token, which then stay valid. */
  previous?: StoredTokens;
  /** Seconds since the epoch; defaults to the clock. */
  now?: number;
}

/** Turn a token endpoint response into the record the token store keeps. */
export function toStoredTokens(response: client.TokenEndpointResponse, options: ToStoredTokensOptions): StoredTokens {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  let expiresAt: number | undefined;
  if (typeof response.expires_in === 'number') expiresAt = now + response.expires_in;
  else {
    // Without expires_in, a JWT access token still says when it ends; an opaque one leaves it unknown.
    try {
      const exp = jose.decodeJwt(response.access_token).exp;
      if (typeof exp === 'number') expiresAt = exp;
    } catch {
      expiresAt = undefined;
    }
  }
  const tokens: StoredTokens = {
    accessToken: response.access_token,
    grant: options.grant,
    clientId: options.clientId,
  };
  const refreshToken = response.refresh_token ?? options.previous?.refreshToken;
  const idToken = response.id_token ?? options.previous?.idToken;
  if (refreshToken) tokens.refreshToken = refreshToken;
  if (idToken) tokens.idToken = idToken;
  if (expiresAt !== undefined) tokens.expiresAt = expiresAt;
  if (response.scope) tokens.scope = response.scope;
  return tokens;
}

function issuerOf(config: client.Configuration): string {
  return config.serverMetadata().issuer;
}

interface OidcErrorContext {
  step: 'discovery' | 'device' | 'client_credentials' | 'refresh';
  issuer: string;
}

/** Map openid-client failures to sluice codes with messages a user can act on. */
export function oidcError(err: unknown, context: OidcErrorContext): SluiceError {
  if (err instanceof SluiceError) return err;
  const failed: ErrorCode = context.step === 'refresh' ? 'ERR_REFRESH_FAILED' : 'ERR_LOGIN_FAILED';
  if (err instanceof client.ResponseBodyError) {
    const detail = `${err.error}${err.error_description ? `: ${err.error_description}` : ''}`;
    switch (err.error) {
      case 'access_denied':
        return new SluiceError('ERR_LOGIN_DENIED', { message: `The login was denied at the identity provider (${detail})`, cause: err });
      case 'expired_token':
        return new SluiceError('ERR_LOGIN_EXPIRED', { cause: err });
      case 'invalid_client':
        return new SluiceError(failed, {
          message:
            context.step === 'client_credentials'
              ? `The identity provider rejected the client id or secret (${detail})`
              : `The identity provider does not accept this client (${detail})`,
          cause: err,
        });
      default:
        return new SluiceError(failed, {
          message:
            context.step === 'refresh'
              ? `The login could not be renewed (${detail}): run \`sluice login\` again`
              : `The identity provider refused the login (${detail})`,
          cause: err,
        });
    }
  }
  if (err instanceof client.ClientError && err.code === 'OAUTH_TIMEOUT' && context.step === 'device') {
    return new SluiceError('ERR_LOGIN_EXPIRED', { cause: err });
  }
  if (err instanceof client.ClientError && err.code === 'OAUTH_ABORT' && context.step === 'device') {
    return new SluiceError('ERR_LOGIN_FAILED', { message: 'The login was cancelled', cause: err });
  }
  if (err instanceof TypeError || (err instanceof client.ClientError && err.code === 'OAUTH_TIMEOUT')) {
    // fetch() rejects with a TypeError when the connection itself fails.
    const reason = (err as { cause?: { message?: string; code?: string } }).cause;
    return new SluiceError('ERR_IDP_UNAVAILABLE', {
      message: `The identity provider ${context.issuer} cannot be reached${reason?.code ? ` (${reason.code})` : reason?.message ? ` (${reason.message})` : ''}`,
      cause: err,
    });
  }
  const message = (err as Error)?.message ?? String(err);
  if (context.step === 'discovery') {
    return new SluiceError('ERR_LOGIN_FAILED', { message: `Discovery of the issuer ${context.issuer} failed: ${message}`, cause: err });
  }
  return new SluiceError(failed, {
    message: context.step === 'refresh' ? `The login could not be renewed (${message}): run \`sluice login\` again` : `The login failed: ${message}`,
    cause: err,
  });
}
