import { SluiceError } from '../../shared/errors.js';
import { checkProfileName } from '../state/profile-name.js';
import { parseStoredTokens, type StoredTokens, type TokenStore } from './stored-tokens.js';

/** One keychain entry, the subset of `@napi-rs/keyring`'s AsyncEntry sluice uses. */
export interface KeyringEntry {
  setPassword(password: string, signal?: AbortSignal | null): Promise<void>;
  getPassword(signal?: AbortSignal | null): Promise<string | null>;
  deletePassword(signal?: AbortSignal | null): Promise<boolean>;
}

/** The part of the `@napi-rs/keyring` module sluice uses. */
export interface KeyringModule {
  AsyncEntry: new (service: string, account: string) => KeyringEntry;
}

const SERVICE = 'sluice';

/** Import `@napi-rs/keyring`; it is an optional dependency, so this rejects where it is not installed. */
export async function loadKeyringModule(): Promise<KeyringModule> {
  // A variable specifier keeps TypeScript from requiring the module's types at build time.
  const name = '@napi-rs/keyring';
  return (await import(name)) as KeyringModule;
}

/** Options for {@link probeKeyring}. */
export interface ProbeKeyringOptions {
  load: () => Promise<KeyringModule>;
  timeoutMs: number;
}

/** The outcome of a keychain probe. */
export type ProbeResult = { ok: true; module: KeyringModule } | { ok: false; reason: string };

/** Write, read back and delete a throwaway entry; any failure or a stall past the budget means "no keychain". */
export async function probeKeyring(options: ProbeKeyringOptions): Promise<ProbeResult> {
  let module: KeyringModule;
  try {
    module = await options.load();
  } catch (err) {
    return { ok: false, reason: `the keychain module @napi-rs/keyring is not available (${(err as Error)?.message ?? err})` };
  }
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new Error(`no answer within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
  });
  const attempt = async (): Promise<void> => {
    const entry = new module.AsyncEntry(SERVICE, `probe-${process.pid}-${Date.now()}`);
    const value = `probe-${Math.random().toString(36).slice(2)}`;
    try {
      await entry.setPassword(value, controller.signal);
      const read = await entry.getPassword(controller.signal);
      if (read !== value) throw new Error('the keychain returned a different value than was written');
    } finally {
      // Some keychains keep an entry whose write they refused: never leave a probe entry behind.
      await entry.deletePassword().catch(() => undefined);
    }
  };
  try {
    await Promise.race([attempt(), timeout]);
    return { ok: true, module };
  } catch (err) {
    return { ok: false, reason: (err as Error)?.message ?? String(err) };
  } finally {
    clearTimeout(timer);
  }
}

/** Options for {@link KeyringTokenStore}. */
export interface KeyringTokenStoreOptions {
  module: KeyringModule;
  /** The sluice config directory: part of the account name, so separate config dirs never share tokens. */
  dir: string;
}

/** Tokens as one OS keychain entry per profile (service "sluice"). */
export class KeyringTokenStore implements TokenStore {
  readonly kind = 'keyring' as const;
  readonly #module: KeyringModule;
  readonly #dir: string;

  constructor(options: KeyringTokenStoreOptions) {
    this.#module = options.module;
    this.#dir = options.dir;
  }

  where(profile: string): string {
    return `OS keychain (service "${SERVICE}", account "${this.#account(profile)}")`;
  }

  async get(profile: string): Promise<StoredTokens | undefined> {
    const text = await this.#call('read', profile, (entry) => entry.getPassword());
    return text == null ? undefined : parseStoredTokens(text, this.where(profile));
  }

  async set(profile: string, tokens: StoredTokens): Promise<void> {
    await this.#call('write', profile, (entry) => entry.setPassword(JSON.stringify(tokens)));
  }

  async delete(profile: string): Promise<boolean> {
    return this.#call('delete', profile, (entry) => entry.deletePassword());
  }

  #account(profile: string): string {
    return `${checkProfileName(profile)}@${this.#dir}`;
  }

  async #call<T>(what: string, profile: string, fn: (entry: KeyringEntry) => Promise<T>): Promise<T> {
    try {
      return await fn(new this.#module.AsyncEntry(SERVICE, this.#account(profile)));
    } catch (err) {
      throw new SluiceError('ERR_TOKEN_STORE', {
        message: `Cannot ${what} the tokens in the ${this.where(profile)}: ${(err as Error)?.message ?? err}`,
        cause: err,
      });
    }
  }
}
