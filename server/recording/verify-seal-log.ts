import { createPublicKey, type KeyObject } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readFileLines, readLineFileEnds } from './seal-log-lines.js';
import {
  GENESIS_PREV,
  sealCheckpointSchema,
  sealLogFilesOf,
  sealLogWorkerOf,
  type SealLogFiles,
  sealCheckpointVerifies,
  sealLineHash,
  sealLogEntrySchema,
  type SealCheckpoint,
} from './seal-log-format.js';
import { publicKeyFingerprint } from './signing-key.js';

/** Kinds of seal-log problem; every one fails verification. */
export type SealLogProblemKind =
  | 'missing' // sessions or exported checkpoints name a seal log the directory does not hold
  | 'entry' // a line that is not an entry (bad JSON, unknown field, out-of-range value)
  | 'sequence' // an entry not at the position it was written at (dropped, inserted or reordered)
  | 'chain' // an entry that does not chain to the one before it
  | 'contradiction' // a later entry of a session says something else than an earlier one
  | 'checkpoint' // a checkpoint line that is not one, names another log, or does not match its entry
  | 'signature' // a checkpoint whose signature does not verify under the public key
  | 'cut' // a checkpoint covers entries the log no longer has
  | 'pinned'; // an exported checkpoint does not match the log (rewritten or cut)

/** One problem, at the entry (line) it was found at; -1 when it concerns the log as a whole. */
export interface SealLogProblem {
  readonly kind: SealLogProblemKind;
  readonly entry: number;
  readonly message: string;
}

/** What the seal log says about one session. */
export interface SealedSession {
  readonly session: string;
  /** Relative to the storage directory. */
  readonly file: string;
  /** `closed` once any entry says so. */
  readonly status: 'closed' | 'interrupted';
  readonly records: number;
  /** Hex SHA-256 of the file's last whole record. */
  readonly finalHash: string;
  /** The first entry of the session. */
  readonly entry: number;
  /** The id of the seal log holding the entry; undefined when that log does not begin with its start entry. */
  readonly log?: string;
  /** Set when a `destroyed` entry follows (retention). */
  readonly destroyed?: { readonly entry: number; readonly at: number };
}

/**
 * The verdict on a storage directory's seal log. `readSealLog` reads every seal log of the directory (one per
 * worker of `serve --workers N`): its fields are those of `seals.log`, except `problems` and `sessions`, which
 * hold those of every log, and `logs`, one report per log.
 */
export interface SealLogReport {
  /** The seal log's file name under the directory (`seals.log`, `seals.<n>.log`). */
  readonly file: string;
  /** Every seal log of the directory, `seals.log` first; only `readSealLog` sets it. */
  readonly logs?: readonly SealLogReport[];
  /** False for a directory from before the seal log (or one whose log was removed: see `problems`). */
  readonly present: boolean;
  readonly logId?: string;
  /** Whole entries read. */
  readonly entries: number;
  /** Seq of the last whole entry; -1 when there is none. */
  readonly headSeq: number;
  /** Highest seq covered by a checkpoint that verifies and matches; -1 for none. */
  readonly signedThrough: number;
  /** Highest seq matched by an exported checkpoint (`--checkpoints`); -1 for none. */
  readonly pinnedThrough: number;
  /** The file ends inside a line (a crash mid-append, or a cut). */
  readonly tornTail: boolean;
  readonly problems: readonly SealLogProblem[];
  /** Sessions by id, as the entries say. */
  readonly sessions: ReadonlyMap<string, SealedSession>;
}

/** What `readSealLog` needs. */
export interface ReadSealLogOptions {
  /** A copy of `storage.dir` (or the live one). */
  readonly dir: string;
  /** The checkpoint signing key: a KeyObject or SPKI PEM. */
  readonly publicKey: KeyObject | string;
  /** Checkpoints exported earlier (`sluice audit checkpoints`), which pin the log up to their seq. */
  readonly exported?: readonly SealCheckpoint[];
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Reads and checks a storage directory's seal log offline: every entry must chain to the one before
 * and sit at its position; every checkpoint in `seals.checkpoints` must verify and match its entry;
 * a checkpoint past the log's end means the tail was cut; exported checkpoints pin the log the same
 * way from outside the directory. Every seal log of the directory is checked so (`seals.log` and the
 * `seals.<n>.log` of each worker of `serve --workers N`, each with its own checkpoints). Reads each file
 * once; holds one small record per session.
 */
export async function readSealLog(options: ReadSealLogOptions): Promise<SealLogReport> {
  const publicKey = typeof options.publicKey === 'string' ? createPublicKey(options.publicKey) : options.publicKey;
  const workers = new Set([0]);
  try {
    for (const name of await readdir(options.dir)) {
      const worker = sealLogWorkerOf(name);
      if (worker !== undefined) workers.add(worker);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const files = [...workers].sort((a, b) => a - b).map((w) => sealLogFilesOf(w));
  // Exported checkpoints name their log: each pins the log of that id, and one naming no log here pins `seals.log` (and fails there).
  const ids = await Promise.all(files.map((f) => startIdOf(join(options.dir, f.log))));
  const exportedOf = (i: number): SealCheckpoint[] =>
    (options.exported ?? []).filter((cp) => {
      const at = ids.indexOf(cp.log);
      return at === i || (at < 0 && i === 0);
    });
  const logs: SealLogReport[] = [];
  for (const [i, f] of files.entries()) logs.push(await readOneSealLog(options.dir, f, publicKey, exportedOf(i)));
  if (logs.length === 1) return { ...logs[0]!, logs };
  const sessions = new Map<string, SealedSession>();
  const problems: SealLogProblem[] = [];
  for (const log of logs) {
    // The messages of `seals.log` read as they always have; those of a worker's log name it.
    const named = log.file === files[0]!.log ? log.problems : log.problems.map((p) => ({ ...p, message: `${log.file}: ${p.message}` }));
    problems.push(...named);
    for (const [id, seal] of log.sessions) if (!sessions.has(id)) sessions.set(id, seal);
  }
  return { ...logs[0]!, present: logs.some((l) => l.present), problems, sessions, logs };
}

/** The id in the first line of a seal log; undefined when it is missing or does not begin with its start entry. */
async function startIdOf(path: string): Promise<string | undefined> {
  try {
    const first = sealLogEntrySchema.safeParse(safeJson((await readLineFileEnds(path)).first ?? ''));
    return first.success && first.data.type === 'start' ? first.data.log : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Reads and checks one seal log (`files`) of the directory, as `readSealLog` describes. */
async function readOneSealLog(dir: string, files: SealLogFiles, publicKey: KeyObject, exportedCheckpoints: readonly SealCheckpoint[]): Promise<SealLogReport> {
  const { log: logFile, checkpoints: checkpointsFile } = files;
  const fingerprint = publicKeyFingerprint(publicKey);
  const problems: SealLogProblem[] = [];
  const problem = (kind: SealLogProblemKind, entry: number, message: string): void => {
    problems.push({ kind, entry, message });
  };

  // Checkpoints first (small): each is matched against its entry as the log streams past.
  const local: SealCheckpoint[] = [];
  try {
    let n = 0;
    for await (const line of readFileLines(join(dir, checkpointsFile))) {
      n++;
      if (!line.complete) break; // a torn last line: a crash mid-append signs nothing
      const cp = sealCheckpointSchema.safeParse(line.overlong ? undefined : safeJson(line.text));
      if (!cp.success) {
        problem('checkpoint', -1, `Line ${n} of ${checkpointsFile} is not a checkpoint`);
        continue;
      }
      if (!sealCheckpointVerifies(cp.data, publicKey, fingerprint)) {
        problem('signature', cp.data.seq, `The checkpoint of entry ${cp.data.seq} (line ${n} of ${checkpointsFile}) ${cp.data.key === fingerprint ? 'does not verify' : `was signed by another key (fingerprint ${cp.data.key.slice(0, 16)}…)`}`);
        continue;
      }
      local.push(cp.data);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const exported: SealCheckpoint[] = [];
  for (const cp of exportedCheckpoints) {
    if (!sealCheckpointVerifies(cp, publicKey, fingerprint)) problem('pinned', cp.seq, `The exported checkpoint of entry ${cp.seq} does not verify under the public key`);
    else exported.push(cp);
  }

  const sessions = new Map<string, SealedSession>();
  let logId: string | undefined;
  let entries = 0;
  let headSeq = -1;
  let tornTail = false;
  let present = true;
  const hashes = new Map<number, string>();
  const wanted = new Set([...local, ...exported].map((cp) => cp.seq));
  try {
    let prev = GENESIS_PREV;
    for await (const line of readFileLines(join(dir, logFile))) {
      if (!line.complete) {
        tornTail = true;
        break;
      }
      const index = entries++;
      const hash = sealLineHash(line.text);
      if (wanted.has(index)) hashes.set(index, hash);
      const expectedPrev = prev;
      prev = hash;
      headSeq = index;
      const parsed = sealLogEntrySchema.safeParse(line.overlong ? undefined : safeJson(line.text));
      if (!parsed.success) {
        problem('entry', index, `Entry ${index} of the seal log is not an entry: its bytes were altered`);
        continue;
      }
      const e = parsed.data;
      if (e.seq !== index) problem('sequence', index, `Entry ${index} of the seal log carries seq ${e.seq}: entries were dropped, inserted or reordered`);
      if (e.prev !== expectedPrev) problem('chain', index, `Entry ${index} of the seal log does not chain to the entry before it`);
      if (index === 0) {
        if (e.type === 'start') logId = e.log;
        else problem('entry', 0, 'The seal log does not begin with its start entry');
        continue;
      }
      if (e.type === 'start') {
        problem('entry', index, `Entry ${index} of the seal log is a second start entry`);
      } else if (e.type === 'seal') {
        const known = sessions.get(e.session);
        if (known === undefined) {
          sessions.set(e.session, { session: e.session, file: e.file, status: e.status, records: e.records, finalHash: e.final_hash, entry: index, ...(logId === undefined ? {} : { log: logId }) });
        } else if (known.records !== e.records || known.finalHash !== e.final_hash || known.file !== e.file) {
          problem('contradiction', index, `Entry ${index} of the seal log says session ${e.session} holds ${e.records} records; entry ${known.entry} says ${known.records} (${known.finalHash === e.final_hash ? 'same' : 'another'} final hash)`);
        } else if (e.status === 'closed' && known.status !== 'closed') {
          sessions.set(e.session, { ...known, status: 'closed' });
        }
      } else {
        const known = sessions.get(e.session);
        if (known !== undefined && known.destroyed === undefined) sessions.set(e.session, { ...known, destroyed: { entry: index, at: e.at } });
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    present = false;
  }

  const match = (cp: SealCheckpoint, kind: 'checkpoint' | 'pinned', what: string): boolean => {
    if (logId !== undefined && cp.log !== logId) {
      problem(kind, cp.seq, `${what} of entry ${cp.seq} belongs to seal log ${cp.log}, not to this directory's ${logId}`);
      return false;
    }
    if (cp.seq > headSeq) {
      problem(
        kind === 'pinned' ? 'pinned' : 'cut',
        cp.seq,
        `${what} covers entries up to ${cp.seq}, but the seal log ${headSeq < 0 ? 'has none' : `ends at entry ${headSeq}`}: ${headSeq < 0 ? 'it was removed' : `entries ${headSeq + 1}–${cp.seq} were cut`}`,
      );
      return false;
    }
    if (hashes.get(cp.seq) !== cp.head) {
      problem(kind, cp.seq, `${what} of entry ${cp.seq} does not match the entry: the seal log was rewritten up to there`);
      return false;
    }
    return true;
  };
  let signedThrough = -1;
  for (const cp of local) if (match(cp, 'checkpoint', 'The checkpoint')) signedThrough = Math.max(signedThrough, cp.seq);
  let pinnedThrough = -1;
  if (!present && exported.length > 0) problem('missing', -1, `The directory holds no ${logFile}, but exported checkpoints pin seal log ${exported[0]!.log}: it was removed`);
  else for (const cp of exported) if (match(cp, 'pinned', 'The exported checkpoint')) pinnedThrough = Math.max(pinnedThrough, cp.seq);

  return {
    file: logFile,
    present,
    ...(logId === undefined ? {} : { logId }),
    entries,
    headSeq,
    signedThrough,
    pinnedThrough,
    tornTail,
    problems,
    sessions,
  };
}

/** Parses exported checkpoints: JSON lines of checkpoints, or the JSON body of `GET /v1/audit/checkpoints`. */
export function parseExportedCheckpoints(text: string): SealCheckpoint[] | string {
  const trimmed = text.trim();
  if (trimmed === '') return 'it holds no checkpoint';
  const whole = safeJson(trimmed);
  if (whole !== undefined && typeof whole === 'object' && whole !== null && !Array.isArray(whole) && 'checkpoints' in whole) {
    const list = sealCheckpointSchema.array().safeParse((whole as { checkpoints: unknown }).checkpoints);
    return list.success ? list.data : 'its "checkpoints" are not checkpoints';
  }
  const out: SealCheckpoint[] = [];
  const lines = trimmed.split('\n');
  for (const [i, line] of lines.entries()) {
    const cp = sealCheckpointSchema.safeParse(safeJson(line));
    if (!cp.success) return `line ${i + 1} is not a checkpoint`;
    out.push(cp.data);
  }
  return out;
}
