import { SluiceError } from '../../shared/errors.js';
import { FileTokenStore } from './file-token-store.js';
import { KeyringTokenStore, loadKeyringModule, probeKeyring, type KeyringModule } from './keyring-token-store.js';
import type { TokenStore } from './stored-tokens.js';

export type { GrantKind, StoredTokens, TokenStore } from './stored-tokens.js';

/** Which backend `SLUICE_TOKEN_STORE` asks for. */
export type TokenStoreMode = 'keyring' | 'file' | 'auto';

/** Options for {@link openTokenStore}. */
export interface OpenTokenStoreOptions {
  /** The sluice config directory; the file backend uses `<dir>/tokens/`. */
  dir: string;
  /** Defaults to `SLUICE_TOKEN_STORE` from `env`, else `auto`. */
  mode?: TokenStoreMode;
  env?: NodeJS.ProcessEnv;
  /** How to load `@napi-rs/keyring`; the default imports it dynamically (it is an optional dependency). */
  loadKeyring?: () => Promise<KeyringModule>;
  /** Budget for the keychain probe (write, read, delete a test entry). Default 3000 ms. */
  probeTimeoutMs?: number;
}

/** Parse `SLUICE_TOKEN_STORE`; anything other than keyring, file or auto is a usage error. */
export function tokenStoreMode(env: NodeJS.ProcessEnv): TokenStoreMode {
  const raw = env.SLUICE_TOKEN_STORE?.trim().toLowerCase() || 'auto';
  if (raw === 'keyring' || raw === 'file' || raw === 'auto') return raw;
  throw new SluiceError('ERR_USAGE', { message: `SLUICE_TOKEN_STORE must be keyring, file or auto (got "${env.SLUICE_TOKEN_STORE}")` });
}

/**
 * Pick the token backend: the OS keychain when it answers a probe within the time budget, otherwise a
 * 0600 file in a 0700 directory. `keyring` mode fails with ERR_TOKEN_STORE instead of falling back,
 * so a user who asked for the keychain never gets tokens on disk silently.
 */
export async function openTokenStore(options: OpenTokenStoreOptions): Promise<TokenStore> {
  const mode = options.mode ?? tokenStoreMode(options.env ?? {});
  const file = new FileTokenStore({ dir: options.dir });
  if (mode === 'file') return file;

  const probe = await probeKeyring({
    load: options.loadKeyring ?? loadKeyringModule,
    timeoutMs: options.probeTimeoutMs ?? 3000,
  });
  if (probe.ok) return new KeyringTokenStore({ module: probe.module, dir: options.dir });
  if (mode === 'keyring') {
    throw new SluiceError('ERR_TOKEN_STORE', {
      message:
        `SLUICE_TOKEN_STORE=keyring but the OS keychain cannot be used: ${probe.reason}. ` +
        'On headless Linux there is usually no Secret Service; set SLUICE_TOKEN_STORE=file (or auto) to keep tokens in a private file.',
    });
  }
  return file;
}
