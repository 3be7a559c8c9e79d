import { writevSync } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';

/** An open session file, append-only from the writer's side. */
export interface RecordingFile {
  /** Writes the buffers at the file's end; resolves to the bytes written (a short write is possible). */
  writev(buffers: Buffer[]): Promise<number>;
  /** Flushes the file's data to stable storage (fdatasync). */
  sync(): Promise<void>;
  /** Cuts the file to `length` bytes; used to remove a half-written record after a failed write. */
  truncate(length: number): Promise<void>;
  /** Writes `buffer` at `position` (overwriting); used to erase a wrapped key before deletion. */
  writeAt(buffer: Buffer, position: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * The file operations recording uses. The default is Node's `fs`; tests wrap it to inject faults
 * (ENOSPC, EIO, EROFS) where a real disk cannot be made to fail on demand.
 */
export interface RecordingIo {
  mkdir(path: string): Promise<void>;
  /** Creates a new file (failing if it exists) for appending. */
  create(path: string): Promise<RecordingFile>;
  /** Opens an existing file for overwriting in place. */
  openExisting(path: string): Promise<RecordingFile>;
  remove(path: string): Promise<void>;
}

async function wrap(path: string, flags: string): Promise<RecordingFile> {
  const handle = await open(path, flags, 0o600);
  return {
    // Records are small and land in the page cache: a synchronous write costs microseconds, where a
    // thread-pool round trip per record doubled the gateway's latency. Durability comes from `sync`.
    writev: async (buffers) => writevSync(handle.fd, buffers),
    sync: () => handle.datasync(),
    truncate: (length) => handle.truncate(length),
    writeAt: async (buffer, position) => {
      await handle.write(buffer, 0, buffer.length, position);
    },
    close: () => handle.close(),
  };
}

/** Node's file system. */
export const nodeRecordingIo: RecordingIo = Object.freeze({
  mkdir: async (path: string) => {
    await mkdir(path, { recursive: true, mode: 0o700 });
  },
  // `ax`: append mode, and fail if the file already exists (a session id is never reused).
  create: (path: string) => wrap(path, 'ax'),
  openExisting: (path: string) => wrap(path, 'r+'),
  remove: (path: string) => rm(path, { force: true }),
});
