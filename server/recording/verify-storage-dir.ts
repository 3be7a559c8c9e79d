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
import { verifySession, type VerifyResult } from './verify-session.js';

/** What `verifyStorageDir` needs: a copy of `storage.dir` (or the live one), keys, and which sessions. */
export interface VerifyDirOptions {
  readonly dir: string;
  readonly keyRing: KeyRing;
  readonly publicKey: KeyObject | string;
  /** One session id; default every session. */
  readonly only?: string;
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
}

/** A verdict in words, and whether it fails the check. */
export interface VerdictText {
  readonly status: 'intact' | 'interrupted' | 'open' | 'broken';
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
 * Verifies the sessions of a storage directory offline, one at a time (bounded memory). With
 * `index.sqlite` present, the index says which sessions exist and what a sealed one must hold (record
 * count, final hash), so a file cut after sealing, or deleted, is caught; files the index does not
 * list are verified too. Without an index, every `sessions/**.rec` file is verified on its own.
 * The index is opened read-only: verifying evidence must never change it.
 */
export async function* verifyStorageDir(options: VerifyDirOptions): AsyncGenerator<SessionVerdict> {
  const { dir } = options;
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
        let result: VerifyResult | undefined;
        try {
          result = await verify(join(dir, row.file), row);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        yield { id: row.id, file: row.file, indexStatus: row.status, notInIndex: false, ...(result === undefined ? {} : { result }) };
      }
    } finally {
      db.close();
    }
  }
  for await (const path of recFiles(join(dir, SESSIONS_DIR))) {
    const file = relative(dir, path);
    const id = basename(path, SESSION_FILE_SUFFIX);
    if (listed.has(file) || (options.only !== undefined && id !== options.only)) continue;
    yield { id, file, notInIndex: hasIndex, result: await verify(path) };
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
  if (r === undefined) return { status: 'broken', text: `broken: the session file ${v.file} is missing`, failed: true };
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
