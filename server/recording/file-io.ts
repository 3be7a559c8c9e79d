import { writevSync } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';

/**
 * An open spool file, append-only from the writer's side. Nothing here rewrites bytes that were written
 * whole: erasure deletes the session's key from the index (only a format 1 file, which carries its key,
 * has its header zeroed, by the archive that deletes it).
 */
export interface RecordingFile {
  /** Writes the buffers at the file's end; resolves to the bytes written (a short write is possible). */
  writev(buffers: Buffer[]): Promise<number>;
  /** Flushes the file's data to stable storage (fdatasync). */
  sync(): Promise<void>;
  /**
   * Cuts the file back to `length` bytes, its last whole record: after a failed write, whether some of its
   * bytes landed is unknowable, and the next record must not be chained onto a torn one.
   */
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * The file operations of the local spool, where open sessions are appended. The default is Node's `fs`;
 * tests wrap it to inject faults (ENOSPC, EIO, EROFS) where a real disk cannot be made to fail on demand.
 */
export interface RecordingIo {
  mkdir(path: string): Promise<void>;
  /** Creates a new file (failing if it exists) for appending. */
  create(path: string): Promise<RecordingFile>;
  remove(path: string): Promise<void>;
}

/** Node's file system. */
export const nodeRecordingIo: RecordingIo = Object.freeze({
  mkdir: async (path: string) => {
    await mkdir(path, { recursive: true, mode: 0o700 });
  },
  // `ax`: append mode, and fail if the file already exists (a session id is never reused).
  create: async (path: string): Promise<RecordingFile> => {
    const handle = await open(path, 'ax', 0o600);
    return {
      // Records are small and land in the page cache: a synchronous write costs microseconds, where a
      // thread-pool round trip per record doubled the gateway's latency. Durability comes from `sync`.
      writev: async (buffers) => writevSync(handle.fd, buffers),
      sync: () => handle.datasync(),
      truncate: (length) => handle.truncate(length),
      close: () => handle.close(),
    };
  },
  remove: (path: string) => rm(path, { force: true }),
});
