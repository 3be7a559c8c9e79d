import { constants as fsConstants } from 'node:fs';
import { mkdir, open as openFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AuditSink } from './audit-sink.js';
import type { AuditSinkConfig } from './audit-sinks-config.js';

type FileSinkConfig = Extract<AuditSinkConfig, { type: 'file' }>;

/**
 * Opened with O_DSYNC where the platform has it (typed as always there, yet absent on Windows), each write
 * returns once its bytes are on disk: a batch is synced by its write, one trip to the thread pool rather
 * than a write and then an fdatasync.
 */
const SYNCED_WRITES: number | undefined = fsConstants.O_DSYNC;
const APPEND_FLAGS = SYNCED_WRITES === undefined ? 'a' : fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | SYNCED_WRITES;

/** The file a sink holds open: its inode (to notice a move), its size (to rotate) and when its path was last looked at. */
interface HeldFile {
  readonly handle: FileHandle;
  readonly ino: number;
  size: number;
  checkedAt: number;
}

/** Options of {@link createFileSink}; defaults are resolved here. */
export interface FileSinkOptions {
  /**
   * How often at most a batch looks whether `path` is still the file held (one `stat`, a trip to the thread
   * pool that cost about as much as the batch's write). Default 1000 ms: batches within a second of a move
   * still go to the moved file, whole, as they would to any daemon's log until it reopens.
   */
  readonly checkPathEveryMs?: number;
  readonly now?: () => number;
}

/**
 * JSON lines appended to a file, synced before the batch counts as delivered. Before a batch would take
 * the file past `max_bytes` it is rotated: `path.<keep-1>` becomes `path.<keep>` (the oldest goes),
 * …, `path` becomes `path.1`. A batch never straddles two files. Files are created 0600: the events name
 * users and connections. The file stays open between batches; it is opened again when a batch finds
 * `path` is no longer the file held (moved or deleted by logrotate or a person; looked at most once every
 * `checkPathEveryMs`), and after any failure.
 */
export function createFileSink(config: FileSinkConfig, options: FileSinkOptions = {}): AuditSink {
  const path = config.path;
  const checkPathEveryMs = options.checkPathEveryMs ?? 1000;
  const now = options.now ?? Date.now;
  let open: HeldFile | undefined;
  const release = async (): Promise<void> => {
    const held = open;
    open = undefined;
    await held?.handle.close().catch(() => undefined);
  };
  const current = async (): Promise<HeldFile> => {
    if (open !== undefined) {
      const at = now();
      if (at - open.checkedAt < checkPathEveryMs) return open;
      const held = await stat(path).catch(() => undefined);
      if (held?.ino === open.ino) {
        open.checkedAt = at;
        return open;
      }
      await release();
    }
    const handle = await openForAppend(path);
    const st = await handle.stat();
    open = { handle, ino: st.ino, size: st.size, checkedAt: now() };
    return open;
  };
  const sendDocs = async (docs: readonly string[]): Promise<void> => {
    if (docs.length === 0) return;
    // One buffer and one write per batch: the line breaks are joined in, not appended per line.
    const lines = Buffer.from(`${docs.join('\n')}\n`, 'utf8');
    try {
      let file = await current();
      if (file.size > 0 && file.size + lines.length > config.max_bytes) {
        await release();
        await rotate(path, config.keep);
        file = await current();
      }
      await file.handle.write(lines);
      file.size += lines.length;
      if (SYNCED_WRITES === undefined) await file.handle.datasync();
    } catch (err) {
      // What was written of a failed batch is unknown: the next batch starts from a fresh open and size.
      await release();
      throw err;
    }
  };
  return {
    send: (events) => sendDocs(events.map((e) => JSON.stringify(e))),
    sendDocs,
    close: release,
  };
}

/** Opens the file to append, making its directory first only when it is missing (most batches find both). */
async function openForAppend(path: string): Promise<FileHandle> {
  try {
    return await openFile(path, APPEND_FLAGS, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    return openFile(path, APPEND_FLAGS, 0o600);
  }
}

async function rotate(path: string, keep: number): Promise<void> {
  if (keep === 0) {
    await rm(path, { force: true });
    return;
  }
  await rm(`${path}.${keep}`, { force: true });
  for (let n = keep - 1; n >= 1; n--) {
    await rename(`${path}.${n}`, `${path}.${n + 1}`).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
  await rename(path, `${path}.1`);
}
