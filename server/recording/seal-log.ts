import { randomBytes } from 'node:crypto';
import { open, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { SluiceError } from '../../shared/errors.js';
import { readFileLines, readLineFileEnds, type LineFileEnds } from './seal-log-lines.js';
import {
  encodeSealEntry,
  encodeStartEntry,
  SEAL_CHECKPOINTS_FILE,
  SEAL_LOG_FILE,
  sealCheckpointSchema,
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
      await this.#handle.write(bytes);
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

/** Reads a line file's ends, cutting a torn last line (a crash mid-append); undefined when the file is missing. */
async function openEnds(path: string, log: SealLogLog | undefined): Promise<LineFileEnds | undefined> {
  let ends: LineFileEnds;
  try {
    ends = await readLineFileEnds(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (ends.wholeLength < ends.size) {
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
 * unsigned, after a retention sweep, and at close. Writes are serialised; an entry whose write failed
 * stays queued and goes first with the next write, so a passing disk fault loses no seal.
 * One process appends to one storage directory.
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
  #queue: SealLogBody[] = [];
  #chain: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(options: SealLogOptions, id: string, entries: LineAppender, checkpoints: LineAppender, head: { seq: number; hash: string }, signedSeq: number) {
    this.#o = options;
    this.id = id;
    this.path = join(options.dir, SEAL_LOG_FILE);
    this.checkpointsPath = join(options.dir, SEAL_CHECKPOINTS_FILE);
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
   * Opens the seal log under `dir`, starting a new one (a new id) when there is none, and cutting a torn
   * last line. A last line that is whole but not an entry is refused (ERR_RECORDING_TAMPERED): chaining
   * onto it would hide what happened to the log.
   */
  static async open(options: SealLogOptions): Promise<SealLog> {
    const path = join(options.dir, SEAL_LOG_FILE);
    let ends = await openEnds(path, options.log);
    let id: string;
    let head: { seq: number; hash: string };
    if (ends === undefined || ends.size === 0) {
      id = `sl_${randomBytes(16).toString('hex')}`;
      const line = encodeStartEntry(id, Date.now());
      const file = await open(path, ends === undefined ? 'wx' : 'w', 0o600);
      try {
        await file.write(`${line}\n`);
        await file.sync();
      } finally {
        await file.close();
      }
      ends = { size: Buffer.byteLength(line) + 1, wholeLength: Buffer.byteLength(line) + 1, first: line, last: line };
      head = { seq: 0, hash: sealLineHash(line) };
    } else {
      const first = parseLine(ends.first);
      if (first?.type !== 'start') throw damaged(path, 'its first line is not the start of a seal log');
      id = first.log;
      const last = parseLine(ends.last);
      if (last === undefined) throw damaged(path, 'its last line is not an entry');
      head = { seq: last.seq, hash: sealLineHash(ends.last!) };
    }
    const checkpointsPath = join(options.dir, SEAL_CHECKPOINTS_FILE);
    const cpEnds = await openEnds(checkpointsPath, options.log);
    let signedSeq = -1;
    if (cpEnds?.last !== undefined) {
      const cp = sealCheckpointSchema.safeParse(safeJson(cpEnds.last));
      if (cp.success && cp.data.log === id) signedSeq = cp.data.seq;
    }
    const entries = await LineAppender.open(path, ends.size);
    const checkpoints = await LineAppender.open(checkpointsPath, cpEnds?.size ?? 0);
    return new SealLog(options, id, entries, checkpoints, head, signedSeq);
  }

  /** The seq and hash of the last entry written. */
  get head(): { seq: number; hash: string } {
    return { seq: this.#seq, hash: this.#head };
  }

  /** Appends an entry (and signs a checkpoint when `checkpointEvery` entries are unsigned); resolves once it is synced. */
  append(body: SealLogBody): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the seal log is closed'));
    this.#queue.push(body);
    return this.#serial(async () => {
      await this.#drain();
      if (this.#seq - this.#signedSeq >= (this.#o.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY)) await this.#sign();
    });
  }

  /** Signs the head into `seals.checkpoints` unless it is signed already. */
  checkpoint(): Promise<void> {
    return this.#serial(async () => {
      await this.#drain();
      await this.#sign();
    });
  }

  /** Checkpoints with a seq above `since`, oldest first, at most `limit`. */
  async checkpointsAfter(since: number, limit: number): Promise<SealCheckpoint[]> {
    const out: SealCheckpoint[] = [];
    try {
      for await (const line of readFileLines(this.checkpointsPath)) {
        // A line being appended right now is not whole yet; it is served next time.
        if (!line.complete) break;
        const cp = sealCheckpointSchema.safeParse(safeJson(line.text));
        if (!cp.success || cp.data.seq <= since) continue;
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
      const line = encodeSealEntry(this.#queue[0]!, seq, this.#head);
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
