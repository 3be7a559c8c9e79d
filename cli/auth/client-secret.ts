import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SluiceError } from '../../shared/errors.js';
import type { ClientAuthMethod } from './oidc.js';

/** A confidential client's credentials, and where the secret came from. */
export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
  /** Absolute path when the secret was read from a file (remembered so renewal can read it again). */
  secretFile?: string;
  authMethod: ClientAuthMethod;
}

/** Options for {@link resolveClientCredentials}. */
export interface ResolveClientCredentialsOptions {
  env: NodeJS.ProcessEnv;
  /** `--client-id`; wins over `SLUICE_CLIENT_ID`. */
  clientId?: string;
  /** `--client-secret-file`; wins over `SLUICE_CLIENT_SECRET`. */
  clientSecretFile?: string;
  /** Used when neither flag nor env names one (renewal: the client the stored tokens belong to). */
  fallbackClientId?: string;
  /** Used when neither flag nor env gives a secret (renewal: the file the login read). */
  fallbackSecretFile?: string;
}

/** Parse `SLUICE_CLIENT_AUTH_METHOD` (default client_secret_post, openid-client's own default). */
export function clientAuthMethod(env: NodeJS.ProcessEnv): ClientAuthMethod {
  const raw = env.SLUICE_CLIENT_AUTH_METHOD?.trim() || 'client_secret_post';
  if (raw === 'client_secret_basic' || raw === 'client_secret_post') return raw;
  throw new SluiceError('ERR_USAGE', {
    message: `SLUICE_CLIENT_AUTH_METHOD must be client_secret_basic or client_secret_post (got "${raw}")`,
  });
}

/**
 * Find a CI client's id and secret from flags, then env, then the fallbacks; resolves undefined when any
 * part is missing. Never prompts: this runs in CI, where a prompt would hang the job.
 */
export async function resolveClientCredentials(options: ResolveClientCredentialsOptions): Promise<ClientCredentials | undefined> {
  const clientId = options.clientId ?? (options.env.SLUICE_CLIENT_ID?.trim() || undefined) ?? options.fallbackClientId;
  let clientSecret: string | undefined;
  let secretFile: string | undefined;
  if (options.clientSecretFile !== undefined) {
    secretFile = resolve(options.clientSecretFile);
    clientSecret = await readSecretFile(secretFile);
  } else if (options.env.SLUICE_CLIENT_SECRET) {
    clientSecret = options.env.SLUICE_CLIENT_SECRET;
  } else if (options.fallbackSecretFile !== undefined) {
    secretFile = options.fallbackSecretFile;
    clientSecret = await readSecretFile(secretFile).catch(() => undefined);
  }
  if (!clientId || !clientSecret) return undefined;
  return { clientId, clientSecret, secretFile, authMethod: clientAuthMethod(options.env) };
}

async function readSecretFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SluiceError('ERR_USAGE', { message: `Cannot read the client secret file ${file}: ${(err as Error).message}`, cause: err });
  }
  // Secret files usually end with a newline that is not part of the secret.
  const secret = text.replace(/\r?\n$/, '');
  if (!secret) throw new SluiceError('ERR_USAGE', { message: `The client secret file ${file} is empty` });
  return secret;
}
