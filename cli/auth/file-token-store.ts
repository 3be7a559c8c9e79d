import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SluiceError } from '../../shared/errors.js';
import { ensurePrivateDir } from '../state/paths.js';
import { checkProfileName } from '../state/profile-name.js';
import { parseStoredTokens, type StoredTokens, type TokenStore } from './stored-tokens.js';

/** Options for {@link FileTokenStore}. */
export interface FileTokenStoreOptions {
  /** The sluice config directory; tokens go to `<dir>/tokens/<profile>.json`. */
  dir: string;
}

/** Write `data` to `file` so readers see the old or the new content, never a torn one, and only the owner can read it. */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  // The temp file sits in the same directory so rename() is atomic (same filesystem).
  const temp = join(file, '..', `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  try {
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

/** Tokens as one JSON file per profile, mode 0600, in a 0700 directory. */
export class FileTokenStore implements TokenStore {
  readonly kind = 'file' as const;
  readonly #tokensDir: string;

  constructor(options: FileTokenStoreOptions) {
    this.#tokensDir = join(options.dir, 'tokens');
  }

  where(profile: string): string {
    return this.#file(profile);
  }

  async get(profile: string): Promise<StoredTokens | undefined> {
    const file = this.#file(profile);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw storeError(`Cannot read ${file}`, err);
    }
    return parseStoredTokens(text, file);
  }

  async set(profile: string, tokens: StoredTokens): Promise<void> {
    const file = this.#file(profile);
    try {
      await ensurePrivateDir(this.#tokensDir);
      await writeFileAtomic(file, `${JSON.stringify(tokens, null, 2)}\n`);
    } catch (err) {
      throw storeError(`Cannot write ${file}`, err);
    }
  }

  async delete(profile: string): Promise<boolean> {
    const file = this.#file(profile);
    try {
      await rm(file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw storeError(`Cannot remove ${file}`, err);
    }
  }

  #file(profile: string): string {
    return join(this.#tokensDir, `${checkProfileName(profile)}.json`);
  }
}

function storeError(what: string, cause: unknown): SluiceError {
  return new SluiceError('ERR_TOKEN_STORE', { message: `${what}: ${(cause as Error)?.message ?? String(cause)}`, cause });
}
