import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readFileLines, readLineFileEnds } from './seal-log-lines.js';
import { sealCheckpointSchema, sealLogEntrySchema, sealLogFilesOf, sealLogWorkerOf, type SealCheckpoint } from './seal-log-format.js';

/** Where a page of `checkpointsOfDirectory` ends: a checkpoint's log and seq (`sl_…:N`), as `next` says. */
export interface CheckpointCursor {
  readonly log: string;
  readonly seq: number;
}

/** Which checkpoints of a directory to read. */
export interface DirectoryCheckpointsQuery {
  /** Only checkpoints of entries after this seq, in every log; -1 for all. */
  readonly since: number;
  /** Only checkpoints after this one: the logs before its log are done, and its log continues after its seq. */
  readonly after?: CheckpointCursor;
  /** At most this many. */
  readonly limit: number;
}

/** One page of the checkpoints of every seal log of a directory. */
export interface DirectoryCheckpoints {
  /** The id of every seal log of the directory with a readable start, `seals.log` first, then by worker. */
  readonly logs: readonly string[];
  readonly checkpoints: SealCheckpoint[];
  /** Where the next page starts; undefined when this one holds the last checkpoint. */
  readonly next?: CheckpointCursor;
}

/** `sl_…:N`, the cursor as the API speaks it; undefined for anything else. */
export function parseCheckpointCursor(text: string): CheckpointCursor | undefined {
  const m = /^(sl_[0-9a-f]{32}):(0|[1-9][0-9]{0,14})$/.exec(text);
  return m === null ? undefined : { log: m[1]!, seq: Number(m[2]) };
}

/** The cursor in the API's words. */
export function checkpointCursorText(cursor: CheckpointCursor): string {
  return `${cursor.log}:${cursor.seq}`;
}

/**
 * The signed checkpoints of every seal log of `dir` (one per worker of `serve --workers N`), in log order
 * (`seals.log`, then `seals.<n>.log` by n) and, within a log, in file order. Each names its log, so one
 * export pins all of them, whichever worker served it. A checkpoints file may still hold checkpoints of an
 * earlier log of the directory: only those of the log it now belongs to are served. Signatures are not
 * checked here: `sluice audit verify --checkpoints` checks what it is given. Reads line by line; holds one page.
 */
export async function checkpointsOfDirectory(dir: string, query: DirectoryCheckpointsQuery): Promise<DirectoryCheckpoints> {
  const workers = new Set([0]);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const worker = sealLogWorkerOf(name);
    if (worker !== undefined) workers.add(worker);
  }
  const logs: { id: string; checkpoints: string }[] = [];
  for (const worker of [...workers].sort((a, b) => a - b)) {
    const files = sealLogFilesOf(worker);
    const id = await startIdOf(join(dir, files.log));
    if (id !== undefined) logs.push({ id, checkpoints: join(dir, files.checkpoints) });
  }
  const ids = logs.map((l) => l.id);
  const { after } = query;
  const from = after === undefined ? 0 : ids.indexOf(after.log);
  // A cursor names a log this directory no longer holds: resuming anywhere would skip or repeat checkpoints.
  if (from < 0) return { logs: ids, checkpoints: [] };
  const out: SealCheckpoint[] = [];
  for (const log of logs.slice(from)) {
    const floor = after !== undefined && log.id === after.log ? Math.max(query.since, after.seq) : query.since;
    for await (const cp of checkpointsOf(log.checkpoints, log.id, floor)) {
      if (out.length === query.limit) {
        const last = out.at(-1)!;
        return { logs: ids, checkpoints: out, next: { log: last.log, seq: last.seq } };
      }
      out.push(cp);
    }
  }
  return { logs: ids, checkpoints: out };
}

/** The checkpoints of log `id` in `path` with a seq above `since`, whole lines only. */
async function* checkpointsOf(path: string, id: string, since: number): AsyncGenerator<SealCheckpoint> {
  try {
    for await (const line of readFileLines(path)) {
      // A line being appended right now is not whole yet; it is served next time.
      if (!line.complete) return;
      const cp = sealCheckpointSchema.safeParse(line.overlong ? undefined : safeJson(line.text));
      if (cp.success && cp.data.log === id && cp.data.seq > since) yield cp.data;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** The id in the start entry of a seal log; undefined when it is missing or does not begin with one. */
async function startIdOf(path: string): Promise<string | undefined> {
  try {
    const first = sealLogEntrySchema.safeParse(safeJson((await readLineFileEnds(path)).first ?? ''));
    return first.success && first.data.type === 'start' ? first.data.log : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
