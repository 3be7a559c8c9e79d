import { randomBytes } from 'node:crypto';
import { link, open, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SluiceError } from '../../shared/errors.js';
import { readFileLines, readLineFileEnds, type LineFileEnds } from './seal-log-lines.js';
import {
  encodeSealEntry,
  encodeStartEntry,
  sealCheckpointSchema,
  sealLogFilesOf,
  sealLineHash,
  sealLogEntrySchema,
  signSealCheckpoint,
  type SealCheckpoint,
  type SealLogBody,
} from './seal-log-format.js';
import type { SigningKey } from './signing-key.js';

/** The minimal logger the seal log reports to. */
interface SealLogLog {
  warn(obj: object, msg: string): void;
}

/** Options of `SealLog.open`; defaults are resolved here and nowhere else. */
export interface SealLogOptions {
  /** `storage.dir`. */
  readonly dir: string;
  readonly signingKey: SigningKey;
  /** The `serve --workers` worker whose log this is (seal-log-format.ts `sealLogFilesOf`); default 0, `seals.log`. */
  readonly worker?: number;
  /** A checkpoint is signed once this many entries are unsigned; default 32. */
  readonly checkpointEvery?: number;
  /** ...and at least this often while any entry is unsigned; default 60 s. */
  readonly checkpointIntervalMs?: number;
  readonly log?: SealLogLog;
  /** Told the outcome of every write (null on success), for readiness. */
  readonly onOutcome?: (error: Error | null) => void;
}

/** Defaults of the checkpoint cadence: at most 32 seals, or one minute of them, are ever unsigned. */
export const DEFAULT_CHECKPOINT_EVERY = 32;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;

/** A file this process appends whole lines to, cutting off a torn line before the next write. */
class LineAppender {
  readonly #handle: FileHandle;
  #size: number;
  #dirtyTail = false;

  private constructor(handle: FileHandle, size: number) {
    this.#handle = handle;
    this.#size = size;
  }

  static async open(path: string, size: number): Promise<LineAppender> {
    return new LineAppender(await open(path, 'a', 0o600), size);
  }

  /** Appends one line and syncs it: an entry a session file may later name must be on disk first. */
  async append(line: string): Promise<void> {
    if (this.#dirtyTail) {
      await this.#handle.truncate(this.#size);
      this.#dirtyTail = false;
    }
    const bytes = Buffer.from(`${line}\n`, 'utf8');
    try {
      await writeFully(this.#handle, bytes);
      await this.#handle.datasync();
    } catch (err) {
      // Whether some bytes landed is unknowable after an error; cutting back to the last whole line is always safe.
      this.#dirtyTail = true;
      throw err;
    }
    this.#size += bytes.length;
  }

  close(): Promise<void> {
    return this.#handle.close();
  }
}

/**
 * Writes all of `bytes`: a write may report fewer bytes than asked without failing, and counting the
 * whole line as written would chain the next entry onto a torn one. A write that makes no progress fails.
 */
async function writeFully(handle: FileHandle, bytes: Buffer): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    if (bytesWritten <= 0) throw new Error(`a write to the seal log made no progress (${offset} of ${bytes.length} bytes written)`);
    offset += bytesWritten;
  }
}

/**
 * Creates `path` holding `line` as its one whole line, or fails if it exists. The line is written to a
 * temporary file and linked into place, so a crash never leaves an empty or torn file under `path`: one
 * that is found empty was emptied, and is refused.
 */
async function createWithLine(path: string, line: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const file = await open(temp, 'wx', 0o600);
  try {
    await writeFully(file, Buffer.from(`${line}\n`, 'utf8'));
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await link(temp, path);
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** The last whole checkpoint of seal log `id` in `path`, scanned in bounded memory; other logs' lines are skipped. */
async function lastCheckpointOf(path: string, id: string): Promise<SealCheckpoint | undefined> {
  let found: SealCheckpoint | undefined;
  try {
    for await (const line of readFileLines(path)) {
      if (!line.complete || line.overlong) continue;
      const cp = sealCheckpointSchema.safeParse(safeJson(line.text));
      if (cp.success && cp.data.log === id) found = cp.data;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return found;
}

/**
 * Reads a line file's ends, cutting a torn last line (a crash mid-append); undefined when the file is
 * missing. With `keepTornOnly`, a file holding no whole line is left as found, for the caller to refuse.
 */
async function openEnds(path: string, log: SealLogLog | undefined, keepTornOnly = false): Promise<LineFileEnds | undefined> {
  let ends: LineFileEnds;
  try {
    ends = await readLineFileEnds(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (ends.wholeLength < ends.size && !(keepTornOnly && ends.wholeLength === 0)) {
    log?.warn({ file: path, bytes: ends.size - ends.wholeLength }, 'a torn last line (a crash mid-append) is cut off');
    await truncate(path, ends.wholeLength);
    return { ...ends, size: ends.wholeLength };
  }
  return ends;
}

function damaged(path: string, why: string): SluiceError {
  return new SluiceError('ERR_RECORDING_TAMPERED', {
    message: `The seal log ${path} is damaged (${why}): run \`sluice audit verify --all\` on a copy of the directory; the gateway appends to no log it cannot continue`,
  });
}

/**
 * The gateway-wide chain of session seals (format in seal-log-format.ts): every sealed, interrupted
 * or destroyed session is appended, synced, as one chained line, and the head is signed into
 * `seals.checkpoints` every `checkpointEvery` entries, every `checkpointIntervalMs` while entries are
 * unsigned, after a retention sweep, and at close. Writes are serialised; a seal whose write failed
 * stays queued and goes first with the next write, so a passing disk fault loses no seal.
 * One process appends to one seal log: each worker of `serve --workers N` keeps its own (`worker`).
 */
export class SealLog {
  /** `sl_` + 32 hex digits, from the first line: session files name it in `session.start`. */
  readonly id: string;
  readonly path: string;
  readonly checkpointsPath: string;
  readonly #o: SealLogOptions;
  readonly #entries: LineAppender;
  readonly #checkpoints: LineAppender;
  #seq: number;
  #head: string;
  #signedSeq: number;
  /** Entries not yet written, oldest first; wrapped so each caller can find its own. */
  #queue: { readonly body: SealLogBody }[] = [];
  #chain: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(options: SealLogOptions, id: string, entries: LineAppender, checkpoints: LineAppender, head: { seq: number; hash: string }, signedSeq: number) {
    this.#o = options;
    this.id = id;
    const files = sealLogFilesOf(options.worker);
    this.path = join(options.dir, files.log);
    this.checkpointsPath = join(options.dir, files.checkpoints);
    this.#entries = entries;
    this.#checkpoints = checkpoints;
    this.#seq = head.seq;
    this.#head = head.hash;
    this.#signedSeq = signedSeq;
    const interval = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.#timer = setInterval(() => {
      this.checkpoint().catch((err: unknown) => options.log?.warn({ err: (err as Error).message }, 'the seal log checkpoint could not be written'));
    }, interval);
    this.#timer.unref();
  }

  /**
   * Opens the seal log under `dir`, starting a new one (a new id) only when neither it nor any checkpoint
   * exists, and cutting a torn last line. Refused (ERR_RECORDING_TAMPERED), because chaining onto it
   * would hide what happened to the log: a last line that is whole but not an entry; a log that exists
   * but holds no whole line, or is missing while checkpoints exist (a new chain would replace one that
   * was signed); and a log whose last checkpoint covers entries past its end, or signs another hash for
   * its last entry (it was rolled back or rewritten).
   */
  static async open(options: SealLogOptions): Promise<SealLog> {
    const files = sealLogFilesOf(options.worker);
    const path = join(options.dir, files.log);
    const checkpointsPath = join(options.dir, files.checkpoints);
    let ends = await openEnds(path, options.log, true);
    const cpEnds = await openEnds(checkpointsPath, options.log);
    if (ends === undefined) {
      if (cpEnds?.last !== undefined) throw damaged(path, `it is missing, but ${checkpointsPath} signs entries of a seal log`);
      const startId = `sl_${randomBytes(16).toString('hex')}`;
      const line = encodeStartEntry(startId, Date.now());
      const created = await createWithLine(path, line).then(
        () => true,
        (err: unknown) => {
          // Another process started this log first (two gateways on one directory): its log is continued, not replaced.
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
          throw err;
        },
      );
      if (created) ends = { size: Buffer.byteLength(line) + 1, wholeLength: Buffer.byteLength(line) + 1, first: line, last: line };
      else ends = await openEnds(path, options.log, true);
      if (ends === undefined) throw damaged(path, 'it was removed while it was being started');
    }
    // A new log is created whole (createWithLine), so an empty one was emptied, not left by a crash.
    if (ends.wholeLength === 0) throw damaged(path, 'it exists but holds no whole entry');
    const first = parseLine(ends.first);
    if (first?.type !== 'start') throw damaged(path, 'its first line is not the start of a seal log');
    const last = parseLine(ends.last);
    if (last === undefined) throw damaged(path, 'its last line is not an entry');
    const id = first.log;
    const head = { seq: last.seq, hash: sealLineHash(ends.last!) };
    let signedSeq = -1;
    const cp = cpEnds?.last === undefined ? undefined : await lastCheckpointOf(checkpointsPath, id);
    if (cp !== undefined) {
      if (cp.seq > head.seq) throw damaged(path, `its last checkpoint signs entry ${cp.seq}, but the log ends at entry ${head.seq}: it was cut back`);
      if (cp.seq === head.seq && cp.head !== head.hash) throw damaged(path, `its last checkpoint signs another hash for entry ${cp.seq}: the entry was rewritten`);
      signedSeq = cp.seq;
    }
    const entries = await LineAppender.open(path, ends.size);
    const checkpoints = await LineAppender.open(checkpointsPath, cpEnds?.size ?? 0);
    return new SealLog(options, id, entries, checkpoints, head, signedSeq);
  }

  /** The seq and hash of the last entry written. */
  get head(): { seq: number; hash: string } {
    return { seq: this.#seq, hash: this.#head };
  }

  /**
   * Appends an entry, resolving once it is synced, and signs a checkpoint when `checkpointEvery` entries
   * are unsigned. The promise reports this entry only: a checkpoint that fails is reported to `onOutcome`
   * and the log, and retried by the next write, the timer or `close`.
   * A failed `seal` stays queued and goes first with the next write. A failed `destroyed` is taken off
   * the queue: its caller keeps the session, so writing it later would log a destruction that did not
   * happen (and the next sweep would log a second one).
   */
  append(body: SealLogBody): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the seal log is closed'));
    const item = { body };
    this.#queue.push(item);
    return this.#serial(async () => {
      try {
        await this.#drain();
      } catch (err) {
        const at = this.#queue.indexOf(item);
        // Written before a later entry failed: that failure is the later caller's to report.
        if (at < 0) return;
        if (body.type === 'destroyed') this.#queue.splice(at, 1);
        throw err;
      }
      if (this.#seq - this.#signedSeq >= (this.#o.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY)) {
        await this.#sign().catch((err: unknown) => this.#o.log?.warn({ err: (err as Error).message }, 'the seal log checkpoint could not be written; it is retried'));
      }
    });
  }

  /** Signs the head into `seals.checkpoints` unless it is signed already. */
  checkpoint(): Promise<void> {
    return this.#serial(async () => {
      await this.#drain();
      await this.#sign();
    });
  }

  /** This log's checkpoints with a seq above `since`, oldest first, at most `limit`. */
  async checkpointsAfter(since: number, limit: number): Promise<SealCheckpoint[]> {
    const out: SealCheckpoint[] = [];
    try {
      for await (const line of readFileLines(this.checkpointsPath)) {
        // A line being appended right now is not whole yet; it is served next time.
        if (!line.complete) break;
        const cp = sealCheckpointSchema.safeParse(safeJson(line.text));
        // The file may hold checkpoints of an earlier log of this directory; they are not this log's.
        if (!cp.success || cp.data.log !== this.id || cp.data.seq <= since) continue;
        out.push(cp.data);
        if (out.length >= limit) break;
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return out;
  }

  /** Writes what is queued, signs the head, and closes the files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      await this.checkpoint();
    } finally {
      await this.#entries.close().catch(() => undefined);
      await this.#checkpoints.close().catch(() => undefined);
    }
  }

  #serial(task: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(task, task);
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const seq = this.#seq + 1;
      const line = encodeSealEntry(this.#queue[0]!.body, seq, this.#head);
      try {
        await this.#entries.append(line);
      } catch (err) {
        this.#o.onOutcome?.(err as Error);
        throw err;
      }
      this.#o.onOutcome?.(null);
      this.#queue.shift();
      this.#seq = seq;
      this.#head = sealLineHash(line);
    }
  }

  async #sign(): Promise<void> {
    if (this.#signedSeq >= this.#seq) return;
    const cp = signSealCheckpoint(this.#o.signingKey, this.id, this.#seq, this.#head, Date.now());
    try {
      await this.#checkpoints.append(JSON.stringify(cp));
    } catch (err) {
      this.#o.onOutcome?.(err as Error);
      throw err;
    }
    this.#signedSeq = cp.seq;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parseLine(text: string | undefined): ReturnType<typeof sealLogEntrySchema.parse> | undefined {
  if (text === undefined) return undefined;
  const parsed = sealLogEntrySchema.safeParse(safeJson(text));
  return parsed.success ? parsed.data : undefined;
}
