import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { chmod, link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { SluiceError } from '../../shared/errors.js';
import { sha256 } from './record-format.js';

/** File name of the checkpoint signing key under `storage.dir`. */
export const SIGNING_KEY_FILE = 'signing-key.pem';

/** The Ed25519 key that signs session checkpoints. */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** SPKI PEM, what `GET /v1/audit/public-key` serves and `audit verify` takes. */
  readonly publicKeyPem: string;
  /** Hex SHA-256 of the DER public key; written into each checkpoint so a verifier can tell keys apart. */
  readonly fingerprint: string;
}

/** The signing key from a private key. */
export function signingKeyFrom(privateKey: KeyObject): SigningKey {
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    fingerprint: publicKeyFingerprint(publicKey),
  };
}

/** Hex SHA-256 of a public key's DER encoding. */
export function publicKeyFingerprint(publicKey: KeyObject): string {
  return sha256(publicKey.export({ type: 'spki', format: 'der' })).toString('hex');
}

/** Loads `<dir>/signing-key.pem`, creating it (mode 0600) on first start; concurrent starters agree on one key. */
export function loadOrCreateSigningKey(dir: string): Promise<SigningKey> {
  return loadOrCreateSigningKeyFile(join(dir, SIGNING_KEY_FILE));
}

/**
 * Loads the signing key at `file`, creating it (mode 0600, its directory 0700) when absent; concurrent
 * starters agree on one key. Refuses (ERR_CONFIG_INVALID) a key that group or others may read or write:
 * whoever can read it can sign a rewritten recording.
 */
export async function loadOrCreateSigningKeyFile(file: string): Promise<SigningKey> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  try {
    return await readSigningKey(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  // Written whole under a name of its own, then linked into place: a process starting beside this one (a
  // worker of `serve --workers N`) sees no key or the whole key, never a file created but not yet written.
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(temp, pem, { flag: 'wx', mode: 0o600 });
    await chmod(temp, 0o600);
    // `link` fails with EEXIST where `rename` would replace: if another process created the key meanwhile, its key wins and is read below.
    await link(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  return readSigningKey(file);
}

async function readSigningKey(file: string): Promise<SigningKey> {
  const info = await stat(file);
  // POSIX modes mean nothing on Windows, where access is governed by ACLs.
  if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
    const problem = `storage.signing_key: ${file} has mode ${mode}; the signing key must be readable by its owner only: chmod 600 it`;
    throw new SluiceError('ERR_CONFIG_INVALID', { message: `config has 1 problem:\n  ${problem}`, details: { problems: [problem] } });
  }
  return signingKeyFrom(createPrivateKey(await readFile(file)));
}

/** Where the signing key is, and whether it sits where the recordings it protects sit. */
export interface SigningKeyLocation {
  /** Absolute path of the private key. */
  readonly file: string;
  /** `storage.signing_key` was not set: the key is `storage.dir/signing-key.pem`, as before it existed. */
  readonly legacy: boolean;
  /** The key is inside `storage.dir`, so whoever can rewrite a recording can also re-sign it. */
  readonly insideDataDir: boolean;
}

/** The signing key's location for a storage section (`dir` and optional `signing_key`). */
export function signingKeyLocation(storage: { readonly dir: string; readonly signing_key?: string }): SigningKeyLocation {
  const dir = resolve(storage.dir);
  const file = storage.signing_key === undefined ? join(dir, SIGNING_KEY_FILE) : resolve(storage.signing_key);
  const rel = relative(dir, file);
  return { file, legacy: storage.signing_key === undefined, insideDataDir: rel === '' || (!rel.startsWith('..') && !isAbsolute(rel)) };
}

/** The warning a gateway logs at start when its signing key is inside its data directory; undefined when it is not. */
export function signingKeyWarning(location: SigningKeyLocation): string | undefined {
  if (!location.insideDataDir) return undefined;
  const where = location.legacy ? `storage.signing_key is not set, so the checkpoint signing key is ${location.file}` : `storage.signing_key (${location.file}) is inside storage.dir`;
  return (
    `${where}: whoever can rewrite a recording there can also re-sign it. Move the key outside the data directory ` +
    '(e.g. /etc/sluice/signing-key.pem, mode 0600, readable by the gateway only) and set storage.signing_key to it'
  );
}

/** Signs a checkpoint message. */
export function signCheckpoint(key: SigningKey, message: Buffer): Buffer {
  return sign(null, message, key.privateKey);
}

/** Checks a checkpoint signature. */
export function verifyCheckpoint(publicKey: KeyObject, message: Buffer, signature: Buffer): boolean {
  try {
    return verify(null, message, publicKey, signature);
  } catch {
    return false;
  }
}
