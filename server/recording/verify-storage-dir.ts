import type { KeyObject } from 'node:crypto';
import { basename } from 'node:path';
import type { SessionStatus } from '../store/store.js';
import { isMissingObject, listAll, type ArchiveReader, type RecordingArchive } from './archive/archive.js';
import type { AuditedSession, AuditIndex } from './audit-index.js';
import type { KeyRing } from './key-ring.js';
import { SESSION_FILE_SUFFIX } from './record-format.js';
import { SEAL_LOG_FILE } from './seal-log-format.js';
import { sessionObjectOfSegment } from './segment-format.js';
import { SegmentedReader } from './segmented-reader.js';
import { NO_SESSION_KEYS, type SessionSource } from './session-source.js';
import { SESSIONS_DIR } from './storage-layout.js';
import { readSealLog, type SealedSession, type SealLogReport } from './verify-seal-log.js';
import { verifySession, type VerifyResult } from './verify-session.js';

/** What `verifyStorageDir` needs: a copy of `storage.dir` (or the live one) as archive and index, keys, and which sessions. */
export interface VerifyDirOptions {
  /** The directory holding the seal log. */
  readonly dir: string;
  /** The session files: read, and listed to find files the index does not name. */
  readonly archive: ArchiveReader & Pick<RecordingArchive, 'list'>;
  /** The session index (which sessions exist, their keys); undefined when the directory has none. */
  readonly index?: AuditIndex;
  readonly keyRing: KeyRing;
  readonly publicKey: KeyObject | string;
  /** One session id; default every session. */
  readonly only?: string;
  /** The directory's seal log, read already (`readSealLog`); read here when absent. */
  readonly sealLog?: SealLogReport;
}

/** The verdict on one session of the directory. */
export interface SessionVerdict {
  readonly id: string;
  /** Relative to the directory. */
  readonly file: string;
  /** What the index says; undefined when there is no index or the session is not in it. */
  readonly indexStatus?: SessionStatus;
  /** True when an index exists and does not list the file. */
  readonly notInIndex: boolean;
  /** True when the directory has no index, and so no data keys of format 2 files. */
  readonly withoutIndex: boolean;
  /** Undefined when the file is missing. */
  readonly result?: VerifyResult;
  /** What the seal log says about the session; undefined when it is not in the log. */
  readonly seal?: SealedSession;
  /** The id of the seal log holding the session's entry, else of `seals.log`; undefined when the directory has none. */
  readonly sealLogId?: string;
  /** The ids of every seal log of the directory (one per worker of `serve --workers N`). */
  readonly sealLogIds?: readonly string[];
  /** A signed (or exported) checkpoint covers the session's `destroyed` entry: retention removed it. */
  readonly destroyedVouched: boolean;
}

/** A verdict in words, and whether it fails the check. */
export interface VerdictText {
  /** `unverifiable`: no data key to check the records with, which says nothing of tampering. */
  readonly status: 'intact' | 'interrupted' | 'open' | 'broken' | 'destroyed' | 'unverifiable';
  readonly text: string;
  readonly failed: boolean;
}

/**
 * Verifies the sessions of a storage directory with no gateway, one at a time, through the archive and
 * the index. With an index, it says which sessions exist, what a sealed one must hold (record count,
 * final hash), and holds the data keys of format 2 files; session files it does not list are verified
 * too. The seal log (`seals.log`) says the same of every session sealed since it began, where deleting
 * or editing an index row does not reach: a session it lists must be there and hold exactly what its
 * entry pins, and one it does not list is yielded as missing.
 */
export async function* verifyStorageDir(options: VerifyDirOptions): AsyncGenerator<SessionVerdict> {
  const { dir, archive, index } = options;
  const sealLog = options.sealLog ?? (await readSealLog({ dir, publicKey: options.publicKey }));
  const logs = sealLog.logs ?? [sealLog];
  const sealLogIds = logs.flatMap((l) => (l.logId === undefined ? [] : [l.logId]));
  // A checkpoint vouches for entries of its own log only.
  const coveredOf = (logId: string | undefined): number => {
    const log = logs.find((l) => l.logId === logId) ?? sealLog;
    return Math.max(log.signedThrough, log.pinnedThrough);
  };
  const sealOf = (id: string): Pick<SessionVerdict, 'seal' | 'sealLogId' | 'sealLogIds' | 'destroyedVouched'> => {
    const seal = sealLog.sessions.get(id);
    const sealLogId = seal?.log ?? sealLog.logId;
    return {
      ...(seal === undefined ? {} : { seal }),
      ...(sealLogId === undefined ? {} : { sealLogId }),
      sealLogIds,
      destroyedVouched: seal?.destroyed !== undefined && seal.destroyed.entry <= coveredOf(seal.log),
    };
  };
  // A session not sealed yet, or never (its replica stopped), is read from its segments up to the last one.
  const source: SessionSource = { objects: new SegmentedReader(archive), keys: index ?? NO_SESSION_KEYS, keyRing: options.keyRing };
  const seen = new Set<string>();
  /** The verdict on one file; undefined when it is missing. */
  const verify = async (name: string, expect?: AuditedSession): Promise<VerifyResult | undefined> => {
    try {
      return await verifySession(source, name, {
        publicKey: options.publicKey,
        ...(expect === undefined
          ? {}
          : { expect: expect.status === 'closed' ? { sessionId: expect.id, records: expect.records, finalHash: expect.finalHash } : { sessionId: expect.id } }),
      });
    } catch (err) {
      // A name no archive object can have (an index row or seal entry pointing outside) names no file either.
      if (isMissingObject(err)) return undefined;
      throw err;
    }
  };
  const listed = new Set<string>();
  const hasIndex = index !== undefined;
  if (index !== undefined) {
    for await (const row of index.sessions(options.only)) {
      listed.add(row.file);
      seen.add(row.id);
      const result = await verify(row.file, row);
      yield { id: row.id, file: row.file, indexStatus: row.status, notInIndex: false, withoutIndex: false, ...(result === undefined ? {} : { result }), ...sealOf(row.id) };
    }
  }
  for await (const object of listAll(archive, `${SESSIONS_DIR}/`)) {
    // Segments stand for their session's file until it is sealed: the session is verified once, from them.
    const file = sessionObjectOfSegment(object.name) ?? object.name;
    if (!file.endsWith(SESSION_FILE_SUFFIX)) continue;
    const id = basename(file, SESSION_FILE_SUFFIX);
    if (listed.has(file) || (options.only !== undefined && id !== options.only)) continue;
    listed.add(file);
    const result = await verify(file);
    if (result === undefined) continue; // removed while listing
    seen.add(id);
    yield { id, file, notInIndex: hasIndex, withoutIndex: !hasIndex, result, ...sealOf(id) };
  }
  // Sessions the seal log lists that neither the index nor the sessions directory holds.
  for (const seal of sealLog.sessions.values()) {
    if (seen.has(seal.session) || (options.only !== undefined && seal.session !== options.only)) continue;
    const verdict = sealOf(seal.session);
    if (verdict.destroyedVouched) continue;
    const result = await verify(seal.file);
    yield { id: seal.session, file: seal.file, notInIndex: hasIndex, withoutIndex: !hasIndex, ...(result === undefined ? {} : { result }), ...verdict };
  }
}

/**
 * One verdict in words: `intact (N records, signed)`, `interrupted at record N byte B`, `open: …`,
 * `broken at record N: reason`, or `unverifiable: …` (a format 2 file checked without the index, which
 * holds its key). An interrupted session fails only when the index says it was sealed (the file was cut)
 * or `strict` is set: a crash legitimately leaves one behind.
 */
export function verdictText(v: SessionVerdict, strict = false): VerdictText {
  const note = v.notInIndex ? ' (not in the index)' : '';
  const r = v.result;
  const seal = v.seal;
  if (seal?.destroyed !== undefined && v.destroyedVouched) {
    return { status: 'destroyed', text: `destroyed by retention (seal log entry ${seal.destroyed.entry})`, failed: false };
  }
  if (r === undefined) {
    if (seal?.destroyed !== undefined) {
      return { status: 'broken', text: `broken: the session file ${v.file} is missing; the seal log says it was destroyed (entry ${seal.destroyed.entry}), but no signed checkpoint covers that entry`, failed: true };
    }
    if (seal !== undefined) {
      return { status: 'broken', text: `broken: the session file ${v.file} is missing, but the seal log (entry ${seal.entry}) says it was ${sealedWord(seal)} with ${seal.records} records${note}`, failed: true };
    }
    return { status: 'broken', text: `broken: the session file ${v.file} is missing`, failed: true };
  }
  // A file whose header cannot be read says nothing about its records: that is the verdict. One whose key
  // is not to be had (erased, or no index) is still framed, so its record count and last hash are checked.
  const unreadable = r.problems.some((p) => p.kind === 'header');
  if (seal !== undefined && !unreadable && (r.records !== seal.records || r.headHash !== seal.finalHash)) {
    const has = r.records === seal.records ? `${r.records} ending in another hash` : `${r.records}`;
    return {
      status: 'broken',
      text: `broken at record ${Math.min(r.records, seal.records)}: cut or rewritten: the seal log (entry ${seal.entry}) says the ${sealedWord(seal)} session holds ${seal.records} records ending in ${seal.finalHash.slice(0, 16)}…; the file has ${has}${note}`,
      failed: true,
    };
  }
  if (seal === undefined && r.ok && r.sealLog !== undefined) {
    // The signature vouches for the name: this session was sealed while that log was kept.
    const ids = v.sealLogIds ?? (v.sealLogId === undefined ? [] : [v.sealLogId]);
    const why =
      ids.length === 0
        ? `the directory has no ${SEAL_LOG_FILE}: it was removed`
        : !ids.includes(r.sealLog)
          ? ids.length === 1
            ? `the directory's seal log is ${ids[0]}: it was replaced`
            : `the directory's seal logs are ${ids.join(', ')}: it was removed or replaced`
          : 'the log has no entry for it: entries were cut from its end or removed';
    return { status: 'broken', text: `broken: the session is sealed into seal log ${r.sealLog}, but ${why}${note}`, failed: true };
  }
  if (v.withoutIndex && r.keyNotStored === true) {
    const unframed = r.problems.find((p) => p.kind === 'length');
    if (unframed !== undefined) return { status: 'broken', text: `broken at record ${unframed.index}: ${unframed.message}`, failed: true };
    return { status: 'unverifiable', text: unverifiableText(r, seal), failed: true };
  }
  const endsAt = `record ${r.lastGoodSeq + 1} byte ${r.lastGoodOffset}`;
  if (r.status === 'intact') return { status: 'intact', text: `intact (${r.records} records, signed)${note}`, failed: false };
  if (r.status === 'interrupted') {
    if (v.indexStatus === 'open') return { status: 'open', text: `open: records 0–${r.lastGoodSeq} intact so far, ending at byte ${r.lastGoodOffset}`, failed: strict };
    return { status: 'interrupted', text: `interrupted at ${endsAt} (records 0–${r.lastGoodSeq} intact, no checkpoint)${note}`, failed: strict };
  }
  const cut = r.problems.every((p) => p.kind === 'interrupted' || p.kind === 'truncated' || p.kind === 'mismatch');
  if (cut) {
    const claimed = r.problems.find((p) => p.kind === 'mismatch')?.message ?? 'the index says the session was sealed';
    return { status: 'broken', text: `broken at record ${r.lastGoodSeq + 1}: cut short, interrupted at ${endsAt}, but ${claimed.charAt(0).toLowerCase()}${claimed.slice(1)}`, failed: true };
  }
  const p = r.problems.find((x) => x.kind !== 'interrupted' && x.kind !== 'truncated' && x.kind !== 'mismatch')!;
  const where = p.index < 0 ? 'the header' : `record ${p.index}`;
  return { status: 'broken', text: `broken at ${where}: ${p.message}${note}`, failed: true };
}

/**
 * A format 2 file verified without the index: its data key is not to be had, so no record is decrypted.
 * What could still be checked was (framing, count, last hash against the seal log) and is said.
 */
function unverifiableText(r: VerifyResult, seal: SealedSession | undefined): string {
  const cut = r.problems.find((p) => p.kind === 'truncated');
  const checked = [
    `${r.records} record${r.records === 1 ? '' : 's'} framed, none decrypted`,
    ...(cut === undefined ? [] : [`the file ends inside record ${cut.index} at byte ${cut.offset}`]),
    ...(seal === undefined ? [] : [`record count and final hash match the seal log (entry ${seal.entry})`]),
  ];
  return `unverifiable: no data key: the index is not available (${checked.join('; ')})`;
}

function sealedWord(seal: SealedSession): string {
  return seal.status === 'closed' ? 'sealed' : 'interrupted';
}

/** The seal log's verdict in words, and whether it fails the check. */
export function sealLogVerdictText(report: SealLogReport): { status: 'intact' | 'absent' | 'broken'; text: string; failed: boolean } {
  if (report.problems.length > 0) {
    const p = report.problems[0]!;
    const more = report.problems.length > 1 ? ` (and ${report.problems.length - 1} more problem${report.problems.length === 2 ? '' : 's'})` : '';
    return { status: 'broken', text: `broken${p.entry >= 0 ? ` at entry ${p.entry}` : ''}: ${p.message}${more}`, failed: true };
  }
  if (!report.present) return { status: 'absent', text: 'absent: the directory has no seal log (sessions sealed before it began verify on their own)', failed: false };
  const logs = report.logs ?? [report];
  if (logs.length > 1) return { status: 'intact', text: `intact: ${logs.map((l) => `${l.file} (${intactParts(l)})`).join(', ')}`, failed: false };
  return { status: 'intact', text: `intact (${intactParts(report)})`, failed: false };
}

/** What an intact seal log holds, and how much of it is signed, in words. */
function intactParts(report: SealLogReport): string {
  if (!report.present) return 'absent';
  const parts = [`${report.entries} ${report.entries === 1 ? 'entry' : 'entries'}`];
  parts.push(report.signedThrough < 0 ? 'no checkpoint yet' : `signed through entry ${report.signedThrough}`);
  if (report.pinnedThrough >= 0) parts.push(`pinned through entry ${report.pinnedThrough} by the exported checkpoints`);
  const unsigned = report.headSeq - Math.max(report.signedThrough, report.pinnedThrough);
  if (unsigned > 0) parts.push(`${unsigned} ${unsigned === 1 ? 'entry' : 'entries'} after the last checkpoint, where a cut shows only against an exported checkpoint`);
  if (report.tornTail) parts.push('a torn last line (a crash mid-append)');
  return parts.join('; ');
}
