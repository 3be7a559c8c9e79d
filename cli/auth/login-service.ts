import { SluiceError } from '../../shared/errors.js';
import { ApiClient, type GatewayInfo, type Me } from '../api-client.js';
import type { LoginKind, Profiles } from '../state/profiles.js';
import { normalizeGateway } from './access-token.js';
import { resolveClientCredentials } from './client-secret.js';
import { deviceLogin } from './device-login.js';
import { clientCredentialsGrant, discoverIssuer, toStoredTokens } from './oidc.js';
import type { StoredTokens, TokenStore } from './stored-tokens.js';

/** Options for {@link login}. */
export interface LoginOptions {
  profile: string;
  profiles: Profiles;
  store: TokenStore;
  env: NodeJS.ProcessEnv;
  /** `--gateway`; else `SLUICE_GATEWAY`, else the profile's gateway. */
  gateway?: string;
  kind: LoginKind;
  /** `--client-id` (client credentials). */
  clientId?: string;
  /** `--client-secret-file` (client credentials). */
  clientSecretFile?: string;
  /** Device-flow instructions go here (stderr). */
  prompt: NodeJS.WritableStream;
  stdoutIsTTY: boolean;
  noBrowser?: boolean;
  signal?: AbortSignal;
}

/** What a successful login established. */
export interface LoginResult {
  profile: string;
  gateway: string;
  info: GatewayInfo;
  tokens: StoredTokens;
  /** The gateway's view of the new token. */
  me: Me;
}

/**
 * Log in to a gateway: learn its issuer, client and audience from `/v1/info`, run the device or
 * client-credentials grant, prove the gateway accepts the token (`/v1/me`), then save profile and tokens.
 * Nothing is saved unless every step succeeds, so a failed login leaves the previous one intact.
 */
export async function login(options: LoginOptions): Promise<LoginResult> {
  const saved = options.profiles.get(options.profile);
  const [gatewayValue, source] = options.gateway
    ? [options.gateway, '--gateway']
    : options.env.SLUICE_GATEWAY?.trim()
      ? [options.env.SLUICE_GATEWAY, 'SLUICE_GATEWAY']
      : [saved?.gateway, `profile "${options.profile}"`];
  if (!gatewayValue) {
    throw new SluiceError('ERR_USAGE', {
      message: `No gateway to log in to: pass --gateway URL (or set SLUICE_GATEWAY); profile "${options.profile}" has none saved yet`,
    });
  }
  const gateway = normalizeGateway(gatewayValue, source);
  const info = await new ApiClient({ gateway }).info();

  let tokens: StoredTokens;
  let clientSecretFile: string | undefined;
  if (options.kind === 'client_credentials') {
    const credentials = await resolveClientCredentials({ env: options.env, clientId: options.clientId, clientSecretFile: options.clientSecretFile });
    if (!credentials) {
      throw new SluiceError('ERR_USAGE', {
        message:
          'A client-credentials login needs a client id and secret: set SLUICE_CLIENT_ID and SLUICE_CLIENT_SECRET, ' +
          'or pass --client-id ID and --client-secret-file FILE',
      });
    }
    clientSecretFile = credentials.secretFile;
    const config = await discoverIssuer({
      issuer: info.issuer,
      clientId: credentials.clientId,
      clientSecret: credentials.clientSecret,
      clientAuthMethod: credentials.authMethod,
    });
    const response = await clientCredentialsGrant({ config, audience: info.audience });
    tokens = toStoredTokens(response, { grant: 'client_credentials', clientId: credentials.clientId });
  } else {
    tokens = await deviceLogin({
      issuer: info.issuer,
      clientId: info.cli_client_id,
      audience: info.audience,
      env: options.env,
      prompt: options.prompt,
      stdoutIsTTY: options.stdoutIsTTY,
      noBrowser: options.noBrowser,
      signal: options.signal,
    });
  }

  const me = await new ApiClient({ gateway, token: tokens.accessToken }).me();
  await options.store.set(options.profile, tokens);
  await options.profiles.set(options.profile, {
    gateway,
    issuer: info.issuer,
    cliClientId: info.cli_client_id,
    audience: info.audience,
    loginKind: options.kind,
    clientSecretFile,
  });
  return { profile: options.profile, gateway, info, tokens, me };
}
