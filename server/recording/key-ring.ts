import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { WrappedSessionKey } from '../store/store.js';

/** One master key of the ring. */
export interface MasterKey {
  readonly id: string;
  /** 32 bytes. */
  readonly key: Buffer;
}

/** The id a lone `storage.master_key` gets, so a later `master_keys` ring can keep decrypting its sessions. */
export const DEFAULT_KEY_ID = 'default';

const NONCE = 12;
const TAG = 16;
const KEY_BYTES = 32;

/** Context bound into every wrap, so a wrapped key cannot be moved to another session or key id. */
function wrapContext(sessionId: string, keyId: string): Buffer {
  return Buffer.from(`sluice-data-key-v1\0${sessionId}\0${keyId}`, 'utf8');
}

/** Decodes a base64 master key; throws a RangeError naming the problem (never the value). */
export function decodeMasterKey(text: string): Buffer {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) throw new RangeError('must be base64');
  const key = Buffer.from(trimmed, trimmed.includes('-') || trimmed.includes('_') ? 'base64url' : 'base64');
  if (key.length !== KEY_BYTES) throw new RangeError(`must decode to ${KEY_BYTES} bytes (got ${key.length})`);
  return key;
}

/**
 * Master keys by id, newest first: new sessions use the first, every key still unwraps what it wrapped.
 * Wrapping is AES-256-GCM with the session id and key id as associated data.
 */
export class KeyRing {
  readonly #keys: readonly MasterKey[];
  readonly #byId: ReadonlyMap<string, Buffer>;

  /** `keys` newest first; at least one, ids unique, 32 bytes each. */
  constructor(keys: readonly MasterKey[]) {
    if (keys.length === 0) throw new RangeError('A key ring needs at least one master key');
    const byId = new Map<string, Buffer>();
    for (const k of keys) {
      if (k.key.length !== KEY_BYTES) throw new RangeError(`Master key "${k.id}" must be ${KEY_BYTES} bytes`);
      if (byId.has(k.id)) throw new RangeError(`Master key id "${k.id}" appears twice`);
      byId.set(k.id, k.key);
    }
    this.#keys = keys;
    this.#byId = byId;
  }

  /** Id of the key new sessions are wrapped with. */
  get currentId(): string {
    return this.#keys[0]!.id;
  }

  /** Ids in ring order, newest first. */
  get ids(): string[] {
    return this.#keys.map((k) => k.id);
  }

  has(keyId: string): boolean {
    return this.#byId.has(keyId);
  }

  /** A fresh random data key, wrapped under the current master key for `sessionId`. */
  newDataKey(sessionId: string): { dataKey: Buffer; wrapped: WrappedSessionKey } {
    const dataKey = randomBytes(KEY_BYTES);
    return { dataKey, wrapped: this.wrap(dataKey, sessionId) };
  }

  /** Wraps a data key under the current master key. */
  wrap(dataKey: Buffer, sessionId: string): WrappedSessionKey {
    const { id, key } = this.#keys[0]!;
    return { keyId: id, wrapped: seal(key, dataKey, wrapContext(sessionId, id)) };
  }

  /** Unwraps a session's data key; throws when the key id is unknown or the wrap was altered. */
  unwrap(wrapped: WrappedSessionKey, sessionId: string): Buffer {
    const key = this.#byId.get(wrapped.keyId);
    if (key === undefined) throw new KeyUnavailableError(`No master key with id "${wrapped.keyId}" is in the key ring`);
    const w = wrapped.wrapped;
    if (w.length !== NONCE + KEY_BYTES + TAG) throw new KeyUnavailableError('The wrapped data key has the wrong length');
    try {
      return open(key, w, wrapContext(sessionId, wrapped.keyId));
    } catch (cause) {
      throw new KeyUnavailableError(`The data key does not unwrap under master key "${wrapped.keyId}" (wrong key, or the header was altered)`, { cause });
    }
  }

  /**
   * Seals `plaintext` under the master key `keyId` with `context` as associated data: for values that
   * prove which key a directory was written with (the key canary) and review previews kept in the index, never
   * for session data.
   */
  sealUnder(keyId: string, plaintext: Buffer, context: Buffer): Buffer {
    const key = this.#byId.get(keyId);
    if (key === undefined) throw new KeyUnavailableError(`No master key with id "${keyId}" is in the key ring`);
    return seal(key, plaintext, context);
  }

  /** Opens what `sealUnder` sealed; undefined when the key with that id does not open it (another key, or altered bytes). */
  openUnder(keyId: string, sealed: Buffer, context: Buffer): Buffer | undefined {
    const key = this.#byId.get(keyId);
    if (key === undefined || sealed.length < NONCE + TAG) return undefined;
    try {
      return open(key, sealed, context);
    } catch {
      return undefined;
    }
  }
}

/** AES-256-GCM: nonce ‖ ciphertext ‖ tag. */
function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** Opens what `seal` sealed; throws when the key or the associated data differ, or the bytes were altered. */
function open(key: Buffer, sealed: Buffer, aad: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE));
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
  return Buffer.concat([decipher.update(sealed.subarray(NONCE, sealed.length - TAG)), decipher.final()]);
}

/** A session's data key cannot be recovered: unknown master key id, wrong key, or an altered header. */
export class KeyUnavailableError extends Error {
  readonly code = 'KEY_UNAVAILABLE';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KeyUnavailableError';
  }
}

/** What `storage` says about keys; `master_key` alone is the ring `[{id: "default", key}]`. */
export interface KeyRingSettings {
  readonly master_key?: string;
  readonly master_keys?: readonly { readonly id: string; readonly key: string }[];
}

/** The key ring of the config, or undefined when none is configured. Values were checked by the schema. */
export function keyRingFromSettings(settings: KeyRingSettings): KeyRing | undefined {
  if (settings.master_keys !== undefined && settings.master_keys.length > 0) {
    return new KeyRing(settings.master_keys.map((k) => ({ id: k.id, key: decodeMasterKey(k.key) })));
  }
  if (settings.master_key !== undefined && settings.master_key.trim() !== '') {
    return new KeyRing([{ id: DEFAULT_KEY_ID, key: decodeMasterKey(settings.master_key) }]);
  }
  return undefined;
}
