import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import Database from 'better-sqlite3';
import type { KeyObject } from 'node:crypto';
import type { SessionStatus } from '../store/store.js';
import type { KeyRing } from './key-ring.js';
import { INDEX_FILE } from './open-storage.js';
import { SESSION_FILE_SUFFIX } from './record-format.js';
import { SESSIONS_DIR } from './recording.js';
import { SEAL_LOG_FILE } from './seal-log-format.js';
import { readSealLog, type SealedSession, type SealLogReport } from './verify-seal-log.js';
import { verifySession, type VerifyResult } from './verify-session.js';

/** What `verifyStorageDir` needs: a copy of `storage.dir` (or the live one), keys, and which sessions. */
export interface VerifyDirOptions {
  readonly dir: string;
  readonly keyRing: KeyRing;
  readonly publicKey: KeyObject | string;
  /** One session id; default every session. */
  readonly only?: string;
  /** The directory's seal log, read already (`readSealLog`); read here when absent. */
  readonly sealLog?: SealLogReport;
}

/** A session as the index knows it. */
interface IndexedSession {
  readonly id: string;
  readonly file: string;
  readonly status: SessionStatus;
  readonly records: number | null;
  readonly final_hash: string | null;
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
  /** Undefined when the file is missing. */
  readonly result?: VerifyResult;
  /** What the seal log says about the session; undefined when it is not in the log. */
  readonly seal?: SealedSession;
  /** The directory's seal log id; undefined when it has none. */
  readonly sealLogId?: string;
  /** A signed (or exported) checkpoint covers the session's `destroyed` entry: retention removed it. */
  readonly destroyedVouched: boolean;
}

/** A verdict in words, and whether it fails the check. */
export interface VerdictText {
  readonly status: 'intact' | 'interrupted' | 'open' | 'broken' | 'destroyed';
  readonly text: string;
  readonly failed: boolean;
}

async function* recFiles(dir: string): AsyncGenerator<string> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) yield* recFiles(path);
    else if (e.isFile() && e.name.endsWith(SESSION_FILE_SUFFIX)) yield path;
  }
}

/**
 * Verifies the sessions of a storage directory offline, one at a time. With `index.sqlite` present,
 * the index says which sessions exist and what a sealed one must hold (record count, final hash); files
 * the index does not list are verified too. The seal log (`seals.log`) says the same of every session
 * sealed since it began, where deleting or editing an index row does not reach: a session it lists
 * must be there and hold exactly what its entry pins, and one it does not list is yielded as missing.
 * The index is opened read-only: verifying evidence must never change it.
 */
export async function* verifyStorageDir(options: VerifyDirOptions): AsyncGenerator<SessionVerdict> {
  const { dir } = options;
  const sealLog = options.sealLog ?? (await readSealLog({ dir, publicKey: options.publicKey }));
  const covered = Math.max(sealLog.signedThrough, sealLog.pinnedThrough);
  const sealOf = (id: string): Pick<SessionVerdict, 'seal' | 'sealLogId' | 'destroyedVouched'> => {
    const seal = sealLog.sessions.get(id);
    return {
      ...(seal === undefined ? {} : { seal }),
      ...(sealLog.logId === undefined ? {} : { sealLogId: sealLog.logId }),
      destroyedVouched: seal?.destroyed !== undefined && seal.destroyed.entry <= covered,
    };
  };
  const seen = new Set<string>();
  const verify = (path: string, expect?: IndexedSession): Promise<VerifyResult> =>
    verifySession(path, {
      keyRing: options.keyRing,
      publicKey: options.publicKey,
      ...(expect === undefined
        ? {}
        : { expect: expect.status === 'closed' ? { sessionId: expect.id, records: expect.records ?? undefined, finalHash: expect.final_hash ?? undefined } : { sessionId: expect.id } }),
    });
  const indexPath = join(dir, INDEX_FILE);
  const listed = new Set<string>();
  const hasIndex = existsSync(indexPath);
  if (hasIndex) {
    const db = new Database(indexPath, { readonly: true, fileMustExist: true });
    try {
      const sql = `SELECT id, file, status, records, final_hash FROM sessions${options.only === undefined ? '' : ' WHERE id = ?'} ORDER BY started_at, id`;
      const rows = (options.only === undefined ? db.prepare(sql).all() : db.prepare(sql).all(options.only)) as IndexedSession[];
      for (const row of rows) {
        listed.add(row.file);
        seen.add(row.id);
        let result: VerifyResult | undefined;
        try {
          result = await verify(join(dir, row.file), row);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        yield { id: row.id, file: row.file, indexStatus: row.status, notInIndex: false, ...(result === undefined ? {} : { result }), ...sealOf(row.id) };
      }
    } finally {
      db.close();
    }
  }
  for await (const path of recFiles(join(dir, SESSIONS_DIR))) {
    const file = relative(dir, path);
    const id = basename(path, SESSION_FILE_SUFFIX);
    if (listed.has(file) || (options.only !== undefined && id !== options.only)) continue;
    seen.add(id);
    yield { id, file, notInIndex: hasIndex, result: await verify(path), ...sealOf(id) };
  }
  // Sessions the seal log lists that neither the index nor the sessions directory holds.
  for (const seal of sealLog.sessions.values()) {
    if (seen.has(seal.session) || (options.only !== undefined && seal.session !== options.only)) continue;
    const verdict = sealOf(seal.session);
    if (verdict.destroyedVouched) continue;
    let result: VerifyResult | undefined;
    try {
      result = await verify(join(dir, seal.file));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    yield { id: seal.session, file: seal.file, notInIndex: hasIndex, ...(result === undefined ? {} : { result }), ...verdict };
  }
}

/**
 * One verdict in words: `intact (N records, signed)`, `interrupted at record N byte B`, `open: …`, or
 * `broken at record N: reason`. An interrupted session fails only when the index says it was sealed
 * (the file was cut) or `strict` is set: a crash legitimately leaves one behind.
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
  // A file whose header or key cannot be read says nothing about its records: that is the verdict.
  const unreadable = r.problems.some((p) => p.kind === 'header' || p.kind === 'key');
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
    const why =
      v.sealLogId === undefined
        ? `the directory has no ${SEAL_LOG_FILE}: it was removed`
        : v.sealLogId !== r.sealLog
          ? `the directory's seal log is ${v.sealLogId}: it was replaced`
          : 'the log has no entry for it: entries were cut from its end or removed';
    return { status: 'broken', text: `broken: the session is sealed into seal log ${r.sealLog}, but ${why}${note}`, failed: true };
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
  const parts = [`${report.entries} ${report.entries === 1 ? 'entry' : 'entries'}`];
  parts.push(report.signedThrough < 0 ? 'no checkpoint yet' : `signed through entry ${report.signedThrough}`);
  if (report.pinnedThrough >= 0) parts.push(`pinned through entry ${report.pinnedThrough} by the exported checkpoints`);
  const unsigned = report.headSeq - Math.max(report.signedThrough, report.pinnedThrough);
  if (unsigned > 0) parts.push(`${unsigned} ${unsigned === 1 ? 'entry' : 'entries'} after the last checkpoint, where a cut shows only against an exported checkpoint`);
  if (report.tornTail) parts.push('a torn last line (a crash mid-append)');
  return { status: 'intact', text: `intact (${parts.join('; ')})`, failed: false };
}
