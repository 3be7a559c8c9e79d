import type * as client from 'openid-client';
import { SluiceError } from '../../shared/errors.js';
import { openBrowser, shouldOpenBrowser } from './browser.js';
import { discoverIssuer, pollDeviceAuthorization, startDeviceAuthorization, toStoredTokens } from './oidc.js';
import type { StoredTokens } from './stored-tokens.js';

/** Options for {@link deviceLogin}. */
export interface DeviceLoginOptions {
  issuer: string;
  clientId: string;
  audience: string;
  env: NodeJS.ProcessEnv;
  /** Where instructions go; stderr, so stdout can carry `--json`. */
  prompt: NodeJS.WritableStream;
  stdoutIsTTY: boolean;
  /** `--no-browser`. */
  noBrowser?: boolean;
  signal?: AbortSignal;
}

/** Parse `SLUICE_DEVICE_POLL_INTERVAL` (seconds, may be fractional); undefined when unset. */
export function devicePollInterval(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.SLUICE_DEVICE_POLL_INTERVAL?.trim();
  if (!raw) return undefined;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600) {
    throw new SluiceError('ERR_USAGE', { message: `SLUICE_DEVICE_POLL_INTERVAL must be a number of seconds between 0 and 600 (got "${raw}")` });
  }
  return seconds;
}

/**
 * The device authorization grant: show the verification URL and user code, open a browser on a desktop,
 * and poll until the user approves (tokens), denies (ERR_LOGIN_DENIED) or the code expires (ERR_LOGIN_EXPIRED).
 */
export async function deviceLogin(options: DeviceLoginOptions): Promise<StoredTokens> {
  const intervalSeconds = devicePollInterval(options.env);
  const config = await discoverIssuer({ issuer: options.issuer, clientId: options.clientId });
  const authorization = await startDeviceAuthorization({ config, audience: options.audience });
  writeInstructions(options.prompt, authorization);

  const url = authorization.verification_uri_complete ?? authorization.verification_uri;
  if (shouldOpenBrowser({ env: options.env, stdoutIsTTY: options.stdoutIsTTY, disabled: options.noBrowser })) {
    if (await openBrowser(url)) options.prompt.write('Opened your browser; if it did not appear, open the URL above yourself.\n');
  }

  const response: client.TokenEndpointResponse = await pollDeviceAuthorization({
    config,
    authorization,
    audience: options.audience,
    intervalSeconds,
    signal: options.signal,
  });
  return toStoredTokens(response, { grant: 'device_code', clientId: options.clientId });
}

function writeInstructions(out: NodeJS.WritableStream, authorization: client.DeviceAuthorizationResponse): void {
  const minutes = Math.max(1, Math.round(authorization.expires_in / 60));
  const lines = authorization.verification_uri_complete
    ? [
        'To log in, open this URL in a browser and approve the request:',
        '',
        `  ${authorization.verification_uri_complete}`,
        '',
        `Check that the page shows the code ${authorization.user_code}.`,
      ]
    : ['To log in, open this URL in a browser:', '', `  ${authorization.verification_uri}`, '', `and enter the code ${authorization.user_code}.`];
  lines.push(`Waiting for approval (the code expires in ${minutes} minute${minutes === 1 ? '' : 's'})…`, '');
  out.write(`${lines.join('\n')}\n`);
}
