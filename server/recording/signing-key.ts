import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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
export async function loadOrCreateSigningKey(dir: string): Promise<SigningKey> {
  const file = join(dir, SIGNING_KEY_FILE);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    return signingKeyFrom(createPrivateKey(await readFile(file)));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  try {
    // `wx`: if another process created it meanwhile, its key wins and is read below.
    await writeFile(file, pem, { flag: 'wx', mode: 0o600 });
    await chmod(file, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return signingKeyFrom(createPrivateKey(await readFile(file)));
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
