/**
 * The session file format, version 2 (all integers big-endian):
 *
 *   header  = "SLUICERC" (8) ‖ version (1) ‖ u32 length ‖ JSON {session, created, key_id, cipher, chain, signature}
 *   record  = u32 length ‖ nonce (12) ‖ AES-256-GCM ciphertext ‖ tag (16)     (length counts nonce..tag)
 *   plaintext of a record = prev (32) ‖ u32 meta length ‖ meta JSON {seq, t, type, …fields} ‖ payload bytes
 *
 * `prev` is the SHA-256 of the previous record's bytes on disk (length through tag); the first record's
 * `prev` is the SHA-256 of the header. The associated data of every record is the session id. The last
 * record of a sealed session is `session.checkpoint`: an Ed25519 signature over
 * `checkpointMessage(session, records, finalHash)`, where `records` counts the records before it and
 * `finalHash` is the hash of the last of them.
 *
 * The session's data key, wrapped under master key `key_id`, is kept in the index (`Store.putSessionKey`),
 * not in the file: erasing a session deletes that one row, and the file, an immutable archive object,
 * is never rewritten. Version 1 differs only in its header, which carries the wrapped key itself
 * (`wrapped_key`); files of both versions are read and verified.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, randomFillSync } from 'node:crypto';
import type { WrappedSessionKey } from '../store/store.js';
import type { EventType } from './event-types.js';

/** The first bytes of every session file. */
export const FILE_MAGIC = Buffer.from('SLUICERC', 'ascii');
/** The format version this code writes. */
export const FORMAT_VERSION = 2;
/** The version whose header carried the wrapped data key; still read and verified. */
export const FORMAT_VERSION_KEY_IN_HEADER = 1;
/** Fixed part of the header: magic, version, JSON length. */
export const HEADER_PREFIX = FILE_MAGIC.length + 1 + 4;
/** Bytes of a record's length prefix. */
export const LENGTH_BYTES = 4;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const HASH_BYTES = 32;
/** Largest record (nonce through tag) a reader accepts; anything larger is a corrupt length. */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;
/** Largest header JSON a reader accepts. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** File name suffix of session files. */
export const SESSION_FILE_SUFFIX = '.rec';

/** The header's fields. */
export interface SessionHeader {
  readonly version: typeof FORMAT_VERSION | typeof FORMAT_VERSION_KEY_IN_HEADER;
  readonly session: string;
  /** Milliseconds since the epoch; `t` of every record counts from here. */
  readonly created: number;
  /** Id of the master key that wraps the session's data key. */
  readonly keyId: string;
  /** The wrapped data key, in a version 1 header only; version 2 keeps it in the index. */
  readonly wrappedKey?: WrappedSessionKey;
}

/** What a new (version 2) header says. */
export interface NewSessionHeader {
  readonly session: string;
  readonly created: number;
  readonly keyId: string;
}

/** The record fields every type carries, plus that type's own. */
export interface RecordMeta {
  readonly seq: number;
  readonly t: number;
  readonly type: EventType;
  readonly [field: string]: unknown;
}

/** SHA-256 of some bytes. */
export function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Encodes a version 2 header: it names the master key, and holds no key. */
export function encodeHeader(header: NewSessionHeader): Buffer {
  const json = Buffer.from(
    JSON.stringify({
      session: header.session,
      created: header.created,
      key_id: header.keyId,
      cipher: 'aes-256-gcm',
      chain: 'sha256',
      signature: 'ed25519',
    }),
    'utf8',
  );
  const prefix = Buffer.alloc(HEADER_PREFIX);
  FILE_MAGIC.copy(prefix, 0);
  prefix.writeUInt8(FORMAT_VERSION, FILE_MAGIC.length);
  prefix.writeUInt32BE(json.length, FILE_MAGIC.length + 1);
  return Buffer.concat([prefix, json]);
}

/** Why a header cannot be read. */
export class HeaderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HeaderError';
  }
}

/** The total header length announced by a header prefix; throws HeaderError if it is not one. */
export function headerLength(prefix: Buffer): number {
  if (prefix.length < HEADER_PREFIX || !prefix.subarray(0, FILE_MAGIC.length).equals(FILE_MAGIC)) {
    throw new HeaderError('Not a sluice session file (bad magic)');
  }
  const version = prefix.readUInt8(FILE_MAGIC.length);
  if (version !== FORMAT_VERSION && version !== FORMAT_VERSION_KEY_IN_HEADER) throw new HeaderError(`Unsupported session file format version ${version}`);
  const length = prefix.readUInt32BE(FILE_MAGIC.length + 1);
  if (length === 0 || length > MAX_HEADER_BYTES) throw new HeaderError(`Header length ${length} is out of range`);
  return HEADER_PREFIX + length;
}

/** Decodes a whole header (prefix and JSON). */
export function decodeHeader(bytes: Buffer): SessionHeader {
  const length = headerLength(bytes);
  if (bytes.length < length) throw new HeaderError('The header is truncated');
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.subarray(HEADER_PREFIX, length).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new HeaderError('The header is not valid JSON');
  }
  const { session, created, key_id, wrapped_key } = json;
  if (typeof session !== 'string' || typeof created !== 'number' || typeof key_id !== 'string') {
    throw new HeaderError('The header lacks session, created or key_id');
  }
  if (bytes.readUInt8(FILE_MAGIC.length) === FORMAT_VERSION) {
    // A key beside the data it opens would survive erasure, which deletes only the index's copy.
    if (wrapped_key !== undefined) throw new HeaderError('A version 2 header carries no wrapped key, and this one does');
    return { version: FORMAT_VERSION, session, created, keyId: key_id };
  }
  if (typeof wrapped_key !== 'string') throw new HeaderError('The version 1 header lacks wrapped_key');
  return { version: FORMAT_VERSION_KEY_IN_HEADER, session, created, keyId: key_id, wrappedKey: { keyId: key_id, wrapped: Buffer.from(wrapped_key, 'base64') } };
}

/**
 * GCM nonces for one session's data key: a random 4-byte prefix and a 64-bit counter (the deterministic
 * construction of NIST SP 800-38D). The key is the session's own, so a nonce never repeats under it, and
 * no random bytes are drawn per record.
 */
export class NonceSequence {
  readonly #prefix = randomBytes(4);
  #counter = 0n;

  /** Write the next nonce into `into` (12 bytes). */
  next(into: Buffer): void {
    this.#prefix.copy(into, 0);
    into.writeBigUInt64BE(this.#counter, 4);
    this.#counter += 1n;
  }
}

/** Encrypts one record; returns its bytes on disk (length prefix included). */
export function encodeRecord(options: { dataKey: Buffer; sessionAad: Buffer; prev: Buffer; meta: RecordMeta; payload?: Buffer; nonces?: NonceSequence }): Buffer {
  const metaJson = Buffer.from(JSON.stringify(options.meta), 'utf8');
  const payloadLength = options.payload?.length ?? 0;
  const plainLength = HASH_BYTES + 4 + metaJson.length + payloadLength;
  const recordLength = NONCE_BYTES + plainLength + TAG_BYTES;
  // One allocation per record: the plaintext is assembled and encrypted into the output buffer's body.
  const out = Buffer.allocUnsafe(LENGTH_BYTES + recordLength);
  out.writeUInt32BE(recordLength, 0);
  const nonce = out.subarray(LENGTH_BYTES, LENGTH_BYTES + NONCE_BYTES);
  if (options.nonces) options.nonces.next(nonce);
  else randomFillSync(nonce);
  const plain = Buffer.allocUnsafe(plainLength);
  options.prev.copy(plain, 0);
  plain.writeUInt32BE(metaJson.length, HASH_BYTES);
  metaJson.copy(plain, HASH_BYTES + 4);
  if (options.payload !== undefined) options.payload.copy(plain, HASH_BYTES + 4 + metaJson.length);
  const cipher = createCipheriv('aes-256-gcm', options.dataKey, nonce);
  cipher.setAAD(options.sessionAad);
  const body = cipher.update(plain);
  body.copy(out, LENGTH_BYTES + NONCE_BYTES);
  const final = cipher.final();
  final.copy(out, LENGTH_BYTES + NONCE_BYTES + body.length);
  cipher.getAuthTag().copy(out, LENGTH_BYTES + NONCE_BYTES + plainLength);
  return out;
}

/** A decrypted record. */
export interface DecodedRecord {
  readonly prev: Buffer;
  readonly meta: RecordMeta;
  readonly payload?: Buffer;
}

/** Decrypts one record (its bytes on disk, length prefix included); throws if it does not authenticate or parse. */
export function decodeRecord(frame: Buffer, dataKey: Buffer, sessionAad: Buffer): DecodedRecord {
  const nonce = frame.subarray(LENGTH_BYTES, LENGTH_BYTES + NONCE_BYTES);
  const tag = frame.subarray(frame.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', dataKey, nonce);
  decipher.setAAD(sessionAad);
  decipher.setAuthTag(tag);
  const plain = Buffer.concat([decipher.update(frame.subarray(LENGTH_BYTES + NONCE_BYTES, frame.length - TAG_BYTES)), decipher.final()]);
  if (plain.length < HASH_BYTES + 4) throw new Error('The record is too short');
  const metaLength = plain.readUInt32BE(HASH_BYTES);
  if (HASH_BYTES + 4 + metaLength > plain.length) throw new Error('The record metadata length is out of range');
  const meta = JSON.parse(plain.subarray(HASH_BYTES + 4, HASH_BYTES + 4 + metaLength).toString('utf8')) as RecordMeta;
  if (typeof meta.seq !== 'number' || typeof meta.t !== 'number' || typeof meta.type !== 'string') throw new Error('The record metadata lacks seq, t or type');
  const rest = plain.subarray(HASH_BYTES + 4 + metaLength);
  return { prev: plain.subarray(0, HASH_BYTES), meta, ...(rest.length > 0 ? { payload: rest } : {}) };
}

/** The bytes a checkpoint signs: a domain tag, the session id, the record count and the final hash. */
export function checkpointMessage(sessionId: string, records: number, finalHash: Buffer): Buffer {
  const count = Buffer.alloc(8);
  count.writeBigUInt64BE(BigInt(records));
  return Buffer.concat([Buffer.from(`sluice-checkpoint-v1\0${sessionId}\0`, 'utf8'), count, finalHash]);
}

/** The associated data of a session's records. */
export function sessionAad(sessionId: string): Buffer {
  return Buffer.from(sessionId, 'utf8');
}
