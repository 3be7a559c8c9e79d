import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileTokenStore } from '../../cli/auth/file-token-store.js';
import { loadKeyringModule, type KeyringEntry, type KeyringModule } from '../../cli/auth/keyring-token-store.js';
import { openTokenStore, tokenStoreMode, type StoredTokens } from '../../cli/auth/token-store.js';
import { SluiceError } from '../../shared/errors.js';

const posix = process.platform !== 'win32';
const dirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-token-store-'));
  dirs.push(dir);
  return join(dir, 'sluice');
}

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const tokens: StoredTokens = {
  accessToken: 'eyJ.access',
  refreshToken: 'refresh-1',
  idToken: 'eyJ.id',
  expiresAt: 1_900_000_000,
  grant: 'device_code',
  clientId: 'sluice-cli',
};

async function caught(promise: Promise<unknown>): Promise<SluiceError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    return err as SluiceError;
  }
  throw new Error('expected a rejection');
}

/** A keychain binding that loads but never answers, like a Secret Service waiting on an unlock prompt. */
const stallingKeyring: KeyringModule = {
  AsyncEntry: class {
    setPassword(): Promise<void> {
      return new Promise(() => undefined);
    }
    getPassword(): Promise<string | null> {
      return new Promise(() => undefined);
    }
    deletePassword(): Promise<boolean> {
      return new Promise(() => undefined);
    }
  },
};

const missingKeyring = async (): Promise<KeyringModule> => {
  throw Object.assign(new Error("Cannot find package '@napi-rs/keyring'"), { code: 'ERR_MODULE_NOT_FOUND' });
};

/** How the store's probe fared against the real keychain, step by step. */
interface ProbeSeen {
  worked: boolean;
  outcome: string;
}

/**
 * The real `@napi-rs/keyring`, watched: it notes how the first entry opened through it — the probe's —
 * answered. A test cannot run a probe of its own to predict the store's: a kernel keyring may refuse a
 * process's first calls and accept later ones (seen on Node 24 here), so two probes can disagree.
 */
function watchedKeyring(): { load: () => Promise<KeyringModule>; probe: () => ProbeSeen } {
  const seen: Record<'set' | 'get' | 'delete', string | undefined> = { set: undefined, get: undefined, delete: undefined };
  let written: string | undefined;
  let read: string | null | undefined;
  let opened = 0;
  const note = async <T>(step: keyof typeof seen, watched: boolean, call: () => Promise<T>): Promise<T> => {
    if (!watched) return call();
    try {
      const value = await call();
      seen[step] = 'ok';
      return value;
    } catch (err) {
      seen[step] = `refused (${(err as Error)?.message ?? String(err)})`;
      throw err;
    }
  };
  const load = async (): Promise<KeyringModule> => {
    const real = await loadKeyringModule();
    return {
      AsyncEntry: class implements KeyringEntry {
        readonly #entry: KeyringEntry;
        readonly #watched = opened++ === 0;
        constructor(service: string, account: string) {
          this.#entry = new real.AsyncEntry(service, account);
        }
        setPassword(password: string, signal?: AbortSignal | null): Promise<void> {
          if (this.#watched) written = password;
          return note('set', this.#watched, () => this.#entry.setPassword(password, signal));
        }
        async getPassword(signal?: AbortSignal | null): Promise<string | null> {
          const value = await note('get', this.#watched, () => this.#entry.getPassword(signal));
          if (this.#watched) read = value;
          return value;
        }
        deletePassword(signal?: AbortSignal | null): Promise<boolean> {
          return note('delete', this.#watched, () => this.#entry.deletePassword(signal));
        }
      },
    };
  };
  return {
    load,
    probe: () => ({
      worked: seen.set === 'ok' && seen.get === 'ok' && written !== undefined && read === written && seen.delete === 'ok',
      outcome: `set ${seen.set ?? 'not answered'}, get ${seen.get ?? 'not answered'}, delete ${seen.delete ?? 'not answered'}`,
    }),
  };
}

describe('file token store', () => {
  it('writes one 0600 JSON file per profile in a 0700 directory and reads it back', async () => {
    const dir = await tempDir();
    const store = new FileTokenStore({ dir });
    await store.set('default', tokens);
    await store.set('staging', { ...tokens, accessToken: 'other' });

    const file = join(dir, 'tokens', 'default.json');
    expect(store.where('default')).toBe(file);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(tokens);
    if (posix) {
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'tokens'))).mode & 0o777).toBe(0o700);
    }
    expect(await store.get('default')).toEqual(tokens);
    expect((await store.get('staging'))?.accessToken).toBe('other');
    expect(await store.get('nobody')).toBeUndefined();
  });

  it('tightens a token directory that exists with wider permissions', async () => {
    if (!posix) return;
    const dir = await tempDir();
    await mkdir(join(dir, 'tokens'), { recursive: true, mode: 0o755 });
    await chmod(join(dir, 'tokens'), 0o755);
    await new FileTokenStore({ dir }).set('default', tokens);
    expect((await stat(join(dir, 'tokens'))).mode & 0o777).toBe(0o700);
  });

  it('replaces the file atomically and leaves no temp files, even after many concurrent writes', async () => {
    const dir = await tempDir();
    const store = new FileTokenStore({ dir });
    await Promise.all(Array.from({ length: 25 }, (_, i) => store.set('default', { ...tokens, accessToken: `token-${i}` })));
    expect(await readdir(join(dir, 'tokens'))).toEqual(['default.json']);
    // Whichever write landed last, the file is one complete record, never a mix.
    expect((await store.get('default'))?.accessToken).toMatch(/^token-\d+$/);
  });

  it('removes its temp file when the final rename fails, and reports ERR_TOKEN_STORE', async () => {
    const dir = await tempDir();
    // A directory where the token file should be makes rename() fail after the temp file is written.
    await mkdir(join(dir, 'tokens', 'default.json', 'blocker'), { recursive: true });
    const err = await caught(new FileTokenStore({ dir }).set('default', tokens));
    expect(err.code).toBe('ERR_TOKEN_STORE');
    expect(err.message).toContain(join(dir, 'tokens', 'default.json'));
    expect(await readdir(join(dir, 'tokens'))).toEqual(['default.json']);
  });

  it('deletes the file and says whether there was one', async () => {
    const dir = await tempDir();
    const store = new FileTokenStore({ dir });
    await store.set('default', tokens);
    expect(await store.delete('default')).toBe(true);
    expect(await readdir(join(dir, 'tokens'))).toEqual([]);
    expect(await store.delete('default')).toBe(false);
    expect(await store.get('default')).toBeUndefined();
  });

  it('reports a corrupt token file as ERR_TOKEN_STORE naming the file', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'tokens'), { recursive: true });
    await writeFile(join(dir, 'tokens', 'default.json'), '{"accessToken": 42');
    const err = await caught(new FileTokenStore({ dir }).get('default'));
    expect(err.code).toBe('ERR_TOKEN_STORE');
    expect(err.message).toContain('default.json');
    await writeFile(join(dir, 'tokens', 'default.json'), '{"accessToken": "x"}');
    expect((await caught(new FileTokenStore({ dir }).get('default'))).message).toMatch(/malformed/);
  });

  it('refuses profile names that would escape the token directory', async () => {
    const dir = await tempDir();
    const err = await caught(new FileTokenStore({ dir }).set('../evil', tokens));
    expect(err.code).toBe('ERR_USAGE');
    expect(await readdir(join(dir, '..'))).toEqual([]);
  });
});

describe('choosing the token store', () => {
  it('reads SLUICE_TOKEN_STORE, defaulting to auto and rejecting anything else', () => {
    expect(tokenStoreMode({})).toBe('auto');
    expect(tokenStoreMode({ SLUICE_TOKEN_STORE: 'FILE' })).toBe('file');
    expect(tokenStoreMode({ SLUICE_TOKEN_STORE: 'keyring' })).toBe('keyring');
    expect(() => tokenStoreMode({ SLUICE_TOKEN_STORE: 'vault' })).toThrowError(/keyring, file or auto/);
  });

  it('uses the file store for SLUICE_TOKEN_STORE=file without touching the keychain', async () => {
    const dir = await tempDir();
    const store = await openTokenStore({ dir, env: { SLUICE_TOKEN_STORE: 'file' }, loadKeyring: missingKeyring });
    expect(store.kind).toBe('file');
  });

  it('falls back to the file store when the keychain module is not installed', async () => {
    const dir = await tempDir();
    const store = await openTokenStore({ dir, env: {}, loadKeyring: missingKeyring });
    expect(store.kind).toBe('file');
    await store.set('default', tokens);
    expect(JSON.parse(await readFile(join(dir, 'tokens', 'default.json'), 'utf8'))).toEqual(tokens);
  });

  it('falls back to the file store when the keychain does not answer within the probe budget', async () => {
    const dir = await tempDir();
    const store = await openTokenStore({ dir, env: {}, loadKeyring: async () => stallingKeyring, probeTimeoutMs: 150 });
    expect(store.kind).toBe('file');
  });

  it('fails with ERR_TOKEN_STORE when SLUICE_TOKEN_STORE=keyring and the keychain module is absent', async () => {
    const dir = await tempDir();
    const err = await caught(openTokenStore({ dir, env: { SLUICE_TOKEN_STORE: 'keyring' }, loadKeyring: missingKeyring }));
    expect(err.code).toBe('ERR_TOKEN_STORE');
    expect(err.message).toContain('@napi-rs/keyring');
    expect(err.message).toContain('SLUICE_TOKEN_STORE=file');
  });

  it('fails with ERR_TOKEN_STORE when SLUICE_TOKEN_STORE=keyring and the keychain stalls', async () => {
    const dir = await tempDir();
    const err = await caught(
      openTokenStore({ dir, env: { SLUICE_TOKEN_STORE: 'keyring' }, loadKeyring: async () => stallingKeyring, probeTimeoutMs: 150 }),
    );
    expect(err.code).toBe('ERR_TOKEN_STORE');
    expect(err.message).toMatch(/no answer within 150 ms/);
  });

  // These run on a desktop (a working keychain) and on a headless machine (none, or a kernel keyring
  // that refuses some calls and not others): each asserts what the store's own probe found, seen
  // through the real binding, so the same test holds wherever it runs and never skips.
  it('with the real @napi-rs/keyring: auto uses the keychain when its probe worked, the 0600 file otherwise', async () => {
    const dir = await tempDir();
    const keyring = watchedKeyring();
    const store = await openTokenStore({ dir, env: {}, loadKeyring: keyring.load });
    const probe = keyring.probe();
    if (!probe.worked) {
      expect(store.kind, `probe: ${probe.outcome}`).toBe('file');
      await store.set('default', tokens);
      expect(JSON.parse(await readFile(join(dir, 'tokens', 'default.json'), 'utf8'))).toEqual(tokens);
      return;
    }
    expect(store.kind).toBe('keyring');
    await store.set('default', tokens);
    try {
      expect(await store.get('default')).toEqual(tokens);
      await expect(stat(join(dir, 'tokens'))).rejects.toThrow();
    } finally {
      expect(await store.delete('default')).toBe(true);
    }
  });

  it('with the real @napi-rs/keyring: SLUICE_TOKEN_STORE=keyring works only where its probe worked', async () => {
    const dir = await tempDir();
    const keyring = watchedKeyring();
    const opened = openTokenStore({ dir, env: { SLUICE_TOKEN_STORE: 'keyring' }, loadKeyring: keyring.load });
    const outcome = await opened.then(
      (store) => ({ store, err: undefined }),
      (err: unknown) => ({ store: undefined, err }),
    );
    const probe = keyring.probe();
    if (probe.worked) {
      expect(outcome.store?.kind).toBe('keyring');
      return;
    }
    expect(outcome.err, `probe: ${probe.outcome}`).toBeInstanceOf(SluiceError);
    const err = outcome.err as SluiceError;
    expect(err.code).toBe('ERR_TOKEN_STORE');
    expect(err.exitCode).toBe(1);
    expect(err.message).toMatch(/OS keychain cannot be used/);
  });
});
