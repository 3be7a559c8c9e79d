/**
 * The seal log: one line of JSON per entry in `storage.dir/seals.log`, each naming the SHA-256 of the
 * line before it (`prev`; the first line's is 64 zeros), so the file is one hash chain across every
 * session the gateway ever sealed:
 *
 *   {"seq":0,"type":"start","log":"sl_…","created":MS,"prev":"00…"}
 *   {"seq":N,"type":"seal","session":"ses_…","file":"sessions/…","status":"closed|interrupted","records":R,"final_hash":"…","sealed_at":MS,"prev":"…"}
 *   {"seq":N,"type":"destroyed","session":"ses_…","at":MS,"prev":"…"}
 *
 * `final_hash` is the SHA-256 of the last whole record of the session file (for a sealed session, its
 * checkpoint record), so a file that is cut, extended or rewritten no longer matches its entry.
 * Checkpoints of the chain live beside it, one line each, in `seals.checkpoints`:
 *
 *   {"log":"sl_…","seq":N,"head":"…","signed_at":MS,"key":"<fingerprint>","signature":"<base64>"}
 *
 * an Ed25519 signature over `sealCheckpointMessage(log, seq, head, signed_at)`, where `head` is the hash
 * of entry `seq`. Hashes are taken over the bytes of the line as written, so nothing is re-serialised.
 */
import { z } from 'zod';
import { sha256 } from './record-format.js';
import { signCheckpoint, verifyCheckpoint, type SigningKey } from './signing-key.js';
import type { KeyObject } from 'node:crypto';

/** The seal log's file name under `storage.dir`. */
export const SEAL_LOG_FILE = 'seals.log';
/** Its signed checkpoints, under `storage.dir`. */
export const SEAL_CHECKPOINTS_FILE = 'seals.checkpoints';
/**
 * Each process appending to a storage directory keeps a seal log of its own: the chain head lives in the
 * process, so two processes appending to one file would each chain onto their own head and fork it. A single
 * gateway and worker 0 of `serve --workers N` keep `seals.log` (as every directory before workers did);
 * worker n keeps `seals.<n>.log` and `seals.<n>.checkpoints`.
 */
export interface SealLogFiles {
  readonly log: string;
  readonly checkpoints: string;
}

/** The seal log files of worker `worker` (0, or undefined for a single process: `seals.log`). */
export function sealLogFilesOf(worker = 0): SealLogFiles {
  return worker === 0 ? { log: SEAL_LOG_FILE, checkpoints: SEAL_CHECKPOINTS_FILE } : { log: `seals.${worker}.log`, checkpoints: `seals.${worker}.checkpoints` };
}

/** The worker a seal log or checkpoints file name belongs to; undefined for any other name. */
export function sealLogWorkerOf(name: string): number | undefined {
  if (name === SEAL_LOG_FILE || name === SEAL_CHECKPOINTS_FILE) return 0;
  const m = /^seals\.([1-9][0-9]{0,5})\.(?:log|checkpoints)$/.exec(name);
  return m === null ? undefined : Number(m[1]);
}
/** `prev` of the first entry. */
export const GENESIS_PREV = '0'.repeat(64);
/** Longest line a reader accepts; real entries are a few hundred bytes. */
export const MAX_SEAL_LINE = 16 * 1024;

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 hex digits');
const seq = z.number().int().min(0);
const time = z.number().int().min(0);
export const sealLogId = z.string().regex(/^sl_[0-9a-f]{32}$/, 'must be a seal log id (sl_…)');
const sessionId = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'must be a session id');

const startEntry = z.strictObject({ seq: z.literal(0), type: z.literal('start'), log: sealLogId, created: time, prev: z.literal(GENESIS_PREV) });
const sealEntry = z.strictObject({
  seq,
  type: z.literal('seal'),
  session: sessionId,
  file: z.string().min(1).max(1024),
  status: z.enum(['closed', 'interrupted']),
  records: z.number().int().min(0),
  final_hash: hex64,
  sealed_at: time,
  prev: hex64,
});
const destroyedEntry = z.strictObject({ seq, type: z.literal('destroyed'), session: sessionId, at: time, prev: hex64 });

/** One entry of the seal log, as parsed (strictly: unknown fields are refused). */
export const sealLogEntrySchema = z.discriminatedUnion('type', [startEntry, sealEntry, destroyedEntry]);
export type SealLogEntry = z.infer<typeof sealLogEntrySchema>;
export type SealEntry = z.infer<typeof sealEntry>;

/** One signed checkpoint of the seal log; also the unit of export (`GET /v1/audit/checkpoints`). */
export const sealCheckpointSchema = z.strictObject({
  log: sealLogId,
  seq,
  head: hex64,
  signed_at: time,
  key: hex64,
  signature: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64'),
});
export type SealCheckpoint = z.infer<typeof sealCheckpointSchema>;

/** An entry without its chain fields: what the writer is asked to append. */
export type SealLogBody =
  | { readonly type: 'seal'; readonly session: string; readonly file: string; readonly status: 'closed' | 'interrupted'; readonly records: number; readonly finalHash: string; readonly sealedAt: number }
  | { readonly type: 'destroyed'; readonly session: string; readonly at: number };

/** The line of an entry (no newline). Fields are written in one fixed order. */
export function encodeSealEntry(body: SealLogBody, entrySeq: number, prev: string): string {
  if (body.type === 'seal') {
    return JSON.stringify({
      seq: entrySeq,
      type: 'seal',
      session: body.session,
      file: body.file,
      status: body.status,
      records: body.records,
      final_hash: body.finalHash,
      sealed_at: body.sealedAt,
      prev,
    });
  }
  return JSON.stringify({ seq: entrySeq, type: 'destroyed', session: body.session, at: body.at, prev });
}

/** The first line of a new seal log. */
export function encodeStartEntry(log: string, created: number): string {
  return JSON.stringify({ seq: 0, type: 'start', log, created, prev: GENESIS_PREV });
}

/** Hex SHA-256 of a line as written (without its newline): what the next entry's `prev` names. */
export function sealLineHash(line: string): string {
  return sha256(Buffer.from(line, 'utf8')).toString('hex');
}

/** The bytes a seal-log checkpoint signs: a domain tag, the log id, the entry's seq and hash, the time. */
export function sealCheckpointMessage(log: string, entrySeq: number, head: string, signedAt: number): Buffer {
  const numbers = Buffer.alloc(16);
  numbers.writeBigUInt64BE(BigInt(entrySeq), 0);
  numbers.writeBigUInt64BE(BigInt(signedAt), 8);
  return Buffer.concat([Buffer.from(`sluice-seal-checkpoint-v1\0${log}\0`, 'utf8'), numbers.subarray(0, 8), Buffer.from(head, 'hex'), numbers.subarray(8)]);
}

/** A signed checkpoint of entry `seq` whose hash is `head`. */
export function signSealCheckpoint(key: SigningKey, log: string, entrySeq: number, head: string, signedAt: number): SealCheckpoint {
  const signature = signCheckpoint(key, sealCheckpointMessage(log, entrySeq, head, signedAt));
  return { log, seq: entrySeq, head, signed_at: signedAt, key: key.fingerprint, signature: signature.toString('base64') };
}

/** Whether a checkpoint's signature verifies under `publicKey` (whose fingerprint is `fingerprint`). */
export function sealCheckpointVerifies(cp: SealCheckpoint, publicKey: KeyObject, fingerprint: string): boolean {
  if (cp.key !== fingerprint) return false;
  return verifyCheckpoint(publicKey, sealCheckpointMessage(cp.log, cp.seq, cp.head, cp.signed_at), Buffer.from(cp.signature, 'base64'));
}
