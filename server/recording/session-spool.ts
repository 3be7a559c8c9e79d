import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { checkObjectName, isArchiveNotFound, type ArchiveReader, type RecordingArchive } from './archive/archive.js';
import { FsArchive } from './archive/fs-archive.js';
import type { RecordingIo } from './file-io.js';
import { SESSIONS_DIR } from './storage-layout.js';

/** Options of the spool. */
export interface SessionSpoolOptions {
  /** The local directory open sessions are appended under, at their archive names. */
  readonly root: string;
  /** Spool file operations; tests inject faults here. */
  readonly io: RecordingIo;
  /** Where sealed sessions go. */
  readonly archive: RecordingArchive;
}

/**
 * The local spool: where open sessions are appended (the durability point of fail-closed recording),
 * each at `root/<archive name>`, and handed to the archive once sealed. With the directory archive the
 * spool shares its root (`storage.dir`), so a session's file is written where it will stay and the
 * hand-off moves nothing; with a remote archive the sealed file is uploaded, then removed here.
 */
export class SessionSpool {
  readonly root: string;
  /**
   * What readers see: this spool's sessions (open ones, which the archive does not hold yet), then the
   * archive. A session being handed off is found on one side or the other: see `#readerOf`.
   */
  readonly reader: ArchiveReader;
  readonly #io: RecordingIo;
  readonly #archive: RecordingArchive;
  /** True when a spool file already is its archive object (the directory archive over the same root). */
  readonly #inPlace: boolean;

  constructor(options: SessionSpoolOptions) {
    this.root = resolve(options.root);
    this.#io = options.io;
    this.#archive = options.archive;
    this.#inPlace = options.archive instanceof FsArchive && options.archive.root === this.root;
    this.reader = this.#readerOf(options.archive);
  }

  /** The spool file of archive name `name`. */
  pathOf(name: string): string {
    checkObjectName(name);
    return join(this.root, name);
  }

  /** Removes the spool file of a session that could not open (nothing of it was recorded). */
  discard(name: string): Promise<void> {
    return this.#io.remove(this.pathOf(name));
  }

  /** Gives a sealed (or interrupted) session's file to the archive; the spool keeps nothing of it. A file not here has nothing to give. */
  async handOff(name: string): Promise<void> {
    const path = this.pathOf(name);
    if (this.#inPlace) return;
    if (!(await isFile(path))) return;
    if (this.#archive.adoptFile !== undefined) {
      try {
        return await this.#archive.adoptFile(path, name);
      } catch (err) {
        // A directory archive on another file system (a shared mount) cannot take the file by a rename: copy it.
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      }
    }
    await this.#archive.put(name, createReadStream(path));
    await this.#io.remove(path);
  }

  /**
   * Writes and syncs a small file where sessions are spooled: what readiness probes while storage fails,
   * so the gateway turns ready again by itself once the disk recovers, even with no traffic.
   */
  async probe(): Promise<void> {
    const dir = join(this.root, SESSIONS_DIR);
    const path = join(dir, `.probe-${randomBytes(6).toString('hex')}`);
    await this.#io.mkdir(dir);
    const file = await this.#io.create(path);
    try {
      await file.writev([Buffer.from('probe')]);
      await file.sync();
    } finally {
      await file.close().catch(() => undefined);
      await this.#io.remove(path).catch(() => undefined);
    }
  }

  /** See `reader`. */
  #readerOf(archive: RecordingArchive): ArchiveReader {
    if (this.#inPlace) return archive;
    // The spool is laid out as a directory archive is: object names are paths under its root.
    const local = new FsArchive({ root: this.root });
    // The spool first: a hand-off puts the file into the archive and only then removes it here, so a file
    // missing from the spool is already in the archive. Asked the other way round, a hand-off that
    // finished between the two reads would hide a file that exists the whole time.
    const either = async <T>(read: (from: ArchiveReader) => Promise<T>): Promise<T> => {
      try {
        return await read(local);
      } catch (err) {
        if (!isArchiveNotFound(err)) throw err;
        return read(archive);
      }
    };
    return {
      get: (name) => either((from) => from.get(name)),
      range: (name, offset, length) => either((from) => from.range(name, offset, length)),
    };
  }
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}
