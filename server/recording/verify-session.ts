import { createPublicKey, type KeyObject } from 'node:crypto';
import { KeyUnavailableError } from './key-ring.js';
import { decodeRecord, type DecodedRecord } from './record-events.js';
import { checkpointMessage, FORMAT_VERSION, HeaderError, sessionAad, sha256, type RecordMeta, type SessionHeader } from './record-format.js';
import { scanSessionObject } from './session-file-scanner.js';
import { isSegmentAware, pieceAt } from './segmented-reader.js';
import { DataKeyNotStoredError, sessionDataKey, type SessionSource } from './session-source.js';
import { publicKeyFingerprint, verifyCheckpoint } from './signing-key.js';

/** Kinds of problem, each with the record position it was found at. */
export type VerifyProblemKind =
  | 'header' // not a session file, unsupported version, or unreadable header
  | 'key' // the data key does not unwrap (unknown master key id, wrong key, altered header), or the index holds none (erased)
  | 'length' // a record length no record can have: nothing past it can be framed
  | 'truncated' // the file ends inside a record (a crash mid-write, or a cut file)
  | 'decrypt' // the record does not authenticate: its bytes were altered
  | 'sequence' // the record's events do not carry the seq that follow the events before them (dropped, inserted or reordered records or events)
  | 'chain' // the record does not chain to the one before it
  | 'checkpoint' // the checkpoint's count, hash or session does not match the file, or it shares its record
  | 'signature' // the checkpoint's signature does not verify under the public key
  | 'trailing' // records after the checkpoint
  | 'interrupted' // no checkpoint: the session was never sealed
  | 'mismatch' // the file disagrees with what the index says about the sealed session
  | 'segment'; // read from its segments (not sealed yet, or never): a segment is missing, reordered or foreign

/** One problem, with where it is. */
export interface VerifyProblem {
  readonly kind: VerifyProblemKind;
  /** 0-based position of the record in the file (in format 1 and 2 files also its event's `seq`); -1 for the header. */
  readonly index: number;
  /** Byte offset in the file. */
  readonly offset: number;
  readonly message: string;
}

/** The verdict on one session file. */
export interface VerifyResult {
  /** True only for an intact, sealed session whose signature verifies. */
  readonly ok: boolean;
  /** `intact`; `interrupted` (ends early, every record present is good); `broken` (altered, reordered, or unreadable). */
  readonly status: 'intact' | 'interrupted' | 'broken';
  readonly session?: string;
  readonly keyId?: string;
  /** Whole records found in the file. */
  readonly records: number;
  /**
   * Position of the last record up to which every record, and every event in them, is present, authentic
   * and in order; -1 if none. A position, like `records` and each problem's `index`: in format 1 and 2
   * files, one event per record, it is also the `seq` of that record's event.
   */
  readonly lastGoodSeq: number;
  /** The `seq` of the last event of that record; -1 if none. */
  readonly lastGoodEvent: number;
  /** Byte offset just past the last good record. */
  readonly lastGoodOffset: number;
  /** Hex SHA-256 of the last whole record (of the header when there is none): what the seal log pins. */
  readonly headHash?: string;
  /** The seal log `session.start` names (`sl_…`); vouched for by the signature only when `ok`. */
  readonly sealLog?: string;
  /**
   * True when the key source holds no data key for this format 2 file (erased, or no index to ask): its
   * records were framed and counted, not decrypted, so no record is vouched for.
   */
  readonly keyNotStored?: boolean;
  readonly problems: readonly VerifyProblem[];
}

/** What `verifySession` needs besides the session's source; `expect` adds what the index knows about a sealed session. */
export interface VerifyOptions {
  /** The checkpoint signing key: a KeyObject or SPKI PEM. */
  readonly publicKey: KeyObject | string;
  readonly expect?: { readonly sessionId?: string; readonly records?: number; readonly finalHash?: string };
}

/**
 * Checks a session file with no gateway: header, key, every record's authenticity, position and chain,
 * and the signed checkpoint. Reports every problem with its record position and byte offset; never
 * throws for a damaged file (only for one that cannot be fetched: ARCHIVE_NOT_FOUND, or an I/O error).
 */
export async function verifySession(source: SessionSource, name: string, options: VerifyOptions): Promise<VerifyResult> {
  const publicKey = typeof options.publicKey === 'string' ? createPublicKey(options.publicKey) : options.publicKey;
  const fingerprint = publicKeyFingerprint(publicKey);
  const problems: VerifyProblem[] = [];
  // A session read from segments: each problem names the segment object its bytes came from.
  const layout = isSegmentAware(source.objects) ? await source.objects.segmentLayout(name) : undefined;
  const problem = (kind: VerifyProblemKind, index: number, offset: number, message: string): void => {
    const piece = layout === undefined || kind === 'segment' ? undefined : pieceAt(layout, offset);
    problems.push({ kind, index, offset, message: piece === undefined ? message : `${message} (in segment ${piece.meta.segment}, ${piece.object})` });
  };
  for (const p of layout?.problems ?? []) problem('segment', p.record, p.offset, p.message);
  let session: string | undefined;
  let keyId: string | undefined;
  let dataKey: Buffer | undefined;
  /** The key is not to be had: records are still framed and hashed, so their count and last hash can be checked against the seal log. */
  let keyless = false;
  let keyNotStored = false;
  let header: SessionHeader | undefined;
  let aad: Buffer = Buffer.alloc(0);
  let prev: Buffer = Buffer.alloc(0);
  let records = 0;
  /** The `seq` the next record's first event must carry; unknown after a record that did not decrypt (format 3). */
  let nextSeq: number | undefined = 0;
  let lastGoodSeq = -1;
  let lastGoodEvent = -1;
  let lastGoodOffset = 0;
  let intactSoFar = true;
  let checkpointAt = -1;
  let endOffset = 0;
  let lastCheckpointHash: string | undefined;
  let sealLog: string | undefined;

  try {
    for await (const item of scanSessionObject(source.objects, name)) {
      if (item.kind === 'header') {
        header = item.header;
        session = item.header.session;
        keyId = item.header.keyId;
        aad = sessionAad(session);
        prev = sha256(item.bytes);
        lastGoodOffset = endOffset = item.bytes.length;
        if (options.expect?.sessionId !== undefined && options.expect.sessionId !== session) {
          problem('header', -1, 0, `The header names session ${session}, not ${options.expect.sessionId}`);
          intactSoFar = false;
        }
        try {
          dataKey = await sessionDataKey(item.header, source);
        } catch (err) {
          if (!(err instanceof KeyUnavailableError)) throw err;
          problem('key', -1, 0, err.message);
          keyless = true;
          keyNotStored = err instanceof DataKeyNotStoredError;
          intactSoFar = false;
        }
        continue;
      }
      if (item.kind === 'truncated') {
        problem('truncated', item.index, item.offset, `The file ends inside record ${item.index} at byte ${item.offset} (${item.have} of ${item.need} bytes present)`);
        intactSoFar = false;
        endOffset = item.offset + item.have;
        break;
      }
      if (item.kind === 'bad-length') {
        problem('length', item.index, item.offset, `Record ${item.index} at byte ${item.offset} has an impossible length (${item.length}); nothing after it can be read`);
        intactSoFar = false;
        break;
      }
      const { index, offset, frame } = item;
      records++;
      endOffset = offset + frame.length;
      const expectedPrev = prev;
      prev = sha256(frame);
      if (keyless) continue;
      if (checkpointAt >= 0) {
        problem('trailing', index, offset, `Record ${index} at byte ${offset} follows the checkpoint`);
        intactSoFar = false;
      }
      let record: DecodedRecord;
      try {
        record = decodeRecord(frame, dataKey!, aad, header!);
      } catch {
        problem('decrypt', index, offset, `Record ${index} at byte ${offset} does not authenticate: its bytes were altered`);
        intactSoFar = false;
        // Before format 3 a record is one event, so the next record's seq is known; from format 3 on, a record
        // holds any number, and the next record's own first seq is taken as where it starts.
        nextSeq = header!.version === FORMAT_VERSION ? undefined : index + 1;
        continue;
      }
      let good = true;
      const first = record.events[0]!.meta;
      const expectedSeq = nextSeq ?? first.seq;
      const outOfPlace = record.events.findIndex((e, i) => e.meta.seq !== expectedSeq + i);
      if (outOfPlace >= 0) {
        const carried = record.events[outOfPlace]!.meta.seq;
        const at = record.events.length === 1 ? `carries seq ${carried}` : `holds seq ${carried} where seq ${expectedSeq + outOfPlace} belongs`;
        problem('sequence', index, offset, `Record ${index} at byte ${offset} ${at}: records or events were dropped, inserted or reordered`);
        good = false;
      }
      nextSeq = expectedSeq + record.events.length;
      if (!record.prev.equals(expectedPrev)) {
        problem('chain', index, offset, `Record ${index} at byte ${offset} does not chain to the record before it`);
        good = false;
      }
      if (index === 0 && first.type === 'session.start' && typeof first.seal_log === 'string') sealLog = first.seal_log;
      const checkpoint = record.events.find((e) => e.meta.type === 'session.checkpoint');
      if (checkpoint !== undefined) {
        checkpointAt = index;
        good = checkCheckpoint(checkpoint.meta, index, offset, expectedPrev) && good;
        if (record.events.length > 1) {
          // What shares the checkpoint's record is covered by no signature.
          problem('checkpoint', index, offset, `The checkpoint (record ${index}) shares its record with ${record.events.length - 1} other event(s): it must be alone`);
          good = false;
        }
      }
      if (!good) intactSoFar = false;
      if (intactSoFar) {
        lastGoodSeq = index;
        lastGoodEvent = expectedSeq + record.events.length - 1;
        lastGoodOffset = offset + frame.length;
      }
    }
  } catch (err) {
    if (!(err instanceof HeaderError)) throw err;
    problem('header', -1, 0, err.message);
    return result();
  }

  if (checkpointAt < 0 && dataKey !== undefined) {
    problem('interrupted', records, endOffset, `The session has no checkpoint: it was never sealed; ${lastGoodSeq < 0 ? 'no record is intact' : `records 0–${lastGoodSeq} are intact, ending at byte ${lastGoodOffset}`}`);
  }
  const { expect } = options;
  if (expect?.records !== undefined && expect.records !== records) {
    problem('mismatch', records, endOffset, `The index says the sealed session has ${expect.records} records; the file has ${records}`);
  }
  if (expect?.finalHash !== undefined && checkpointAt >= 0 && lastGoodSeq === checkpointAt && lastCheckpointHash !== expect.finalHash) {
    problem('mismatch', checkpointAt, endOffset, 'The checkpoint signs a different final hash than the index holds');
  }
  return result();

  // Hoisted helpers below share the state above.
  function checkCheckpoint(meta: RecordMeta, index: number, offset: number, expectedPrev: Buffer): boolean {
    const f = meta as unknown as { session?: unknown; records?: unknown; final_hash?: unknown; signature?: unknown; public_key?: unknown };
    let good = true;
    if (f.session !== session || f.records !== index || f.final_hash !== expectedPrev.toString('hex')) {
      problem('checkpoint', index, offset, `The checkpoint (record ${index}) does not match the file: it covers ${String(f.records)} records ending in ${String(f.final_hash).slice(0, 16)}…`);
      good = false;
    }
    lastCheckpointHash = typeof f.final_hash === 'string' ? f.final_hash : undefined;
    if (typeof f.public_key === 'string' && f.public_key !== fingerprint) {
      problem('signature', index, offset, `The checkpoint was signed by another key (fingerprint ${f.public_key.slice(0, 16)}…)`);
      return false;
    }
    const signature = typeof f.signature === 'string' ? Buffer.from(f.signature, 'base64') : Buffer.alloc(0);
    if (!verifyCheckpoint(publicKey, checkpointMessage(session!, index, expectedPrev), signature)) {
      problem('signature', index, offset, `The checkpoint's signature (record ${index}) does not verify`);
      good = false;
    }
    return good;
  }

  function result(): VerifyResult {
    const broken = problems.some((p) => p.kind !== 'interrupted' && p.kind !== 'truncated');
    const status = broken ? 'broken' : problems.length > 0 ? 'interrupted' : 'intact';
    return {
      ok: status === 'intact',
      status,
      session,
      keyId,
      records,
      lastGoodSeq,
      lastGoodEvent,
      lastGoodOffset,
      ...(session === undefined ? {} : { headHash: prev.toString('hex') }),
      ...(sealLog === undefined ? {} : { sealLog }),
      ...(keyNotStored ? { keyNotStored } : {}),
      problems,
    };
  }
}
