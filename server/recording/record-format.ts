/**
 * The session file format, version 3 (all integers big-endian):
 *
 *   header  = "SLUICERC" (8) ‖ version (1) ‖ u32 length ‖ JSON {session, created, key_id, cipher, chain, signature, compression}
 *   record  = u32 length ‖ nonce (12) ‖ AES-256-GCM ciphertext ‖ tag (16)     (length counts nonce..tag)
 *   plaintext of a record = prev (32) ‖ coding (1) ‖ body
 *   body    = event… when `coding` is 0 (stored); raw DEFLATE of event… with EVENT_DICTIONARY preset when 1
 *   event   = u32 meta length ‖ meta JSON {seq, t, type, …fields} ‖ u32 payload length ‖ payload bytes
 *
 * A record holds one or more events (record-events.ts): those a writer appends together share one nonce,
 * tag and chain hash. `seq` numbers events across the session, so an event keeps its `seq` whatever record
 * it shares; records are numbered by their position. `compression` in the header is `deflate` (records may
 * be coded 1) or `none` (every record is coded 0).
 *
 * `prev` is the SHA-256 of the previous record's bytes on disk (length through tag); the first record's
 * `prev` is the SHA-256 of the header. The associated data of every record is the session id. The last
 * record of a sealed session holds one event alone, `session.checkpoint`: an Ed25519 signature over
 * `checkpointMessage(session, records, finalHash)`, where `records` counts the records before it and
 * `finalHash` is the hash of the last of them.
 *
 * The session's data key, wrapped under master key `key_id`, is kept in the index (`Store.putSessionKey`),
 * not in the file: erasing a session deletes that one row, and the file, an immutable archive object,
 * is never rewritten. Earlier versions are read and verified: version 2 holds one event per record,
 * uncompressed (plaintext = prev ‖ u32 meta length ‖ meta JSON ‖ payload bytes), so there `seq` is also
 * the record's position; version 1 is version 2 with the wrapped key in its header (`wrapped_key`).
 */
import { createCipheriv, createDecipheriv, createHash, hash, randomBytes, randomFillSync, type KeyObject } from 'node:crypto';
import type { WrappedSessionKey } from '../store/store.js';
import type { EventType } from './event-types.js';

/** The first bytes of every session file. */
export const FILE_MAGIC = Buffer.from('SLUICERC', 'ascii');
/** The format version this code writes: several events per record, compressed or not as the header says. */
export const FORMAT_VERSION = 3;
/** The version with one uncompressed event per record and the data key in the index; still read and verified. */
export const FORMAT_VERSION_ONE_EVENT = 2;
/** The version whose header carried the wrapped data key; still read and verified. */
export const FORMAT_VERSION_KEY_IN_HEADER = 1;
/** Every version a reader accepts. */
export type FormatVersion = typeof FORMAT_VERSION | typeof FORMAT_VERSION_ONE_EVENT | typeof FORMAT_VERSION_KEY_IN_HEADER;
/**
 * Whether a version 3 file's records may be compressed (`storage.compression`). `deflate` makes a record's
 * size depend on how well its content compresses, which someone who sees sizes but not contents can
 * measure; `none` leaves sizes depending on lengths only, as in version 2.
 */
export type RecordCompression = 'deflate' | 'none';
/** What `storage.compression` is when not set. */
export const DEFAULT_COMPRESSION: RecordCompression = 'deflate';
/** Fixed part of the header: magic, version, JSON length. */
export const HEADER_PREFIX = FILE_MAGIC.length + 1 + 4;
/** Bytes of a record's length prefix. */
export const LENGTH_BYTES = 4;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const HASH_BYTES = 32;
/** Largest record (nonce through tag) a reader accepts; anything larger is a corrupt length. */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;
/** Largest plaintext a record's events may take once inflated: what an uncompressed record may hold. */
export const MAX_EVENTS_BYTES = MAX_RECORD_BYTES;
/** Largest header JSON a reader accepts. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** File name suffix of session files. */
export const SESSION_FILE_SUFFIX = '.rec';

/** The header's fields. */
export interface SessionHeader {
  readonly version: FormatVersion;
  readonly session: string;
  /** Milliseconds since the epoch; `t` of every record counts from here. */
  readonly created: number;
  /** Id of the master key that wraps the session's data key. */
  readonly keyId: string;
  /** The wrapped data key, in a version 1 header only; later versions keep it in the index. */
  readonly wrappedKey?: WrappedSessionKey;
  /** Whether records may be compressed; a version 3 header says, earlier files are never compressed. */
  readonly compression: RecordCompression;
}

/** What a new (version 3) header says. */
export interface NewSessionHeader {
  readonly session: string;
  readonly created: number;
  readonly keyId: string;
  readonly compression: RecordCompression;
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
  // Every record's chain hash is one part: hashed in one call, without a Hash object per record.
  if (parts.length === 1) return hash('sha256', parts[0]!, 'buffer');
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Encodes a version 3 header: it names the master key, holds no key, and says whether records may be compressed. */
export function encodeHeader(header: NewSessionHeader): Buffer {
  const json = Buffer.from(
    JSON.stringify({
      session: header.session,
      created: header.created,
      key_id: header.keyId,
      cipher: 'aes-256-gcm',
      chain: 'sha256',
      signature: 'ed25519',
      compression: header.compression,
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
  if (version !== FORMAT_VERSION && version !== FORMAT_VERSION_ONE_EVENT && version !== FORMAT_VERSION_KEY_IN_HEADER) throw new HeaderError(`Unsupported session file format version ${version}`);
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
  const { session, created, key_id, wrapped_key, compression } = json;
  if (typeof session !== 'string' || typeof created !== 'number' || typeof key_id !== 'string') {
    throw new HeaderError('The header lacks session, created or key_id');
  }
  const version = bytes.readUInt8(FILE_MAGIC.length);
  if (version === FORMAT_VERSION || version === FORMAT_VERSION_ONE_EVENT) {
    // A key beside the data it opens would survive erasure, which deletes only the index's copy.
    if (wrapped_key !== undefined) throw new HeaderError(`A version ${version} header carries no wrapped key, and this one does`);
    if (version === FORMAT_VERSION_ONE_EVENT) return { version, session, created, keyId: key_id, compression: 'none' };
    if (compression !== 'deflate' && compression !== 'none') throw new HeaderError('The version 3 header says neither compression "deflate" nor "none"');
    return { version, session, created, keyId: key_id, compression };
  }
  if (typeof wrapped_key !== 'string') throw new HeaderError('The version 1 header lacks wrapped_key');
  return { version: FORMAT_VERSION_KEY_IN_HEADER, session, created, keyId: key_id, wrappedKey: { keyId: key_id, wrapped: Buffer.from(wrapped_key, 'base64') }, compression: 'none' };
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

/** Bytes of a version 3 record's coding byte, between `prev` and its body. */
export const CODING_BYTES = 1;

/**
 * Encrypts one record whose plaintext is `prev ‖ parts…`; returns its bytes on disk (length prefix
 * included). Throws (so the write fails, closed) for a record too large for a reader to accept.
 */
export function sealRecord(options: { dataKey: Buffer | KeyObject; sessionAad: Buffer; prev: Buffer; parts: readonly Buffer[]; nonces?: NonceSequence }): Buffer {
  let plainLength = options.prev.length;
  for (const p of options.parts) plainLength += p.length;
  const recordLength = NONCE_BYTES + plainLength + TAG_BYTES;
  if (recordLength > MAX_RECORD_BYTES) throw new Error(`A record of ${recordLength} bytes is larger than a reader accepts (${MAX_RECORD_BYTES})`);
  // One allocation per record: each part is encrypted straight into the output buffer's body.
  const out = Buffer.allocUnsafe(LENGTH_BYTES + recordLength);
  out.writeUInt32BE(recordLength, 0);
  const nonce = out.subarray(LENGTH_BYTES, LENGTH_BYTES + NONCE_BYTES);
  if (options.nonces) options.nonces.next(nonce);
  else randomFillSync(nonce);
  const cipher = createCipheriv('aes-256-gcm', options.dataKey, nonce);
  cipher.setAAD(options.sessionAad);
  let at = LENGTH_BYTES + NONCE_BYTES;
  at += cipher.update(options.prev).copy(out, at);
  for (const part of options.parts) {
    if (part.length === 0) continue;
    at += cipher.update(part).copy(out, at);
  }
  at += cipher.final().copy(out, at);
  cipher.getAuthTag().copy(out, at);
  return out;
}

/** Decrypts one record (its bytes on disk, length prefix included) into its plaintext; throws if it does not authenticate. */
export function openRecord(frame: Buffer, dataKey: Buffer, sessionAad: Buffer): Buffer {
  const nonce = frame.subarray(LENGTH_BYTES, LENGTH_BYTES + NONCE_BYTES);
  const tag = frame.subarray(frame.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', dataKey, nonce);
  decipher.setAAD(sessionAad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(frame.subarray(LENGTH_BYTES + NONCE_BYTES, frame.length - TAG_BYTES)), decipher.final()]);
}

/** One event: its metadata and its payload bytes, if any. */
export interface RecordEvent {
  readonly meta: RecordMeta;
  readonly payload?: Buffer;
}

/** Checks the fields every event's metadata carries; throws for anything else. */
export function checkedMeta(value: unknown): RecordMeta {
  const meta = value as Partial<RecordMeta> | null;
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta) || !Number.isSafeInteger(meta.seq) || typeof meta.t !== 'number' || typeof meta.type !== 'string') {
    throw new Error('The record metadata lacks seq, t or type');
  }
  return meta as RecordMeta;
}

/** Reads the one event of a version 1 or 2 record's plaintext (after `prev`). */
export function decodeSingleEvent(rest: Buffer): RecordEvent {
  if (rest.length < 4) throw new Error('The record is too short');
  const metaLength = rest.readUInt32BE(0);
  if (4 + metaLength > rest.length) throw new Error('The record metadata length is out of range');
  const meta = checkedMeta(JSON.parse(rest.subarray(4, 4 + metaLength).toString('utf8')));
  const payload = rest.subarray(4 + metaLength);
  return payload.length > 0 ? { meta, payload } : { meta };
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
