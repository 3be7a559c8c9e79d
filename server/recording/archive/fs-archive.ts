import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { HEADER_PREFIX, MAX_HEADER_BYTES } from '../record-format.js';
import {
  ArchiveError,
  checkListPrefix,
  checkObjectName,
  MAX_LIST_PAGE,
  type ArchiveBody,
  type ArchiveListOptions,
  type ArchiveObject,
  type ArchivePage,
  type RecordingArchive,
} from './archive.js';

/** Options of the directory archive. */
export interface FsArchiveOptions {
  /** The directory object names are relative to (`storage.dir`). */
  readonly root: string;
}

const READ_STREAM_CHUNK = 256 * 1024;

/** What `delete` zeroes: the longest header a session file may have, which covers a format 1 wrapped key. */
const ERASED_HEAD_BYTES = HEADER_PREFIX + MAX_HEADER_BYTES;

/**
 * The archive as a directory tree: object `a/b/c.rec` is the file `root/a/b/c.rec` (mode 0600, directories
 * 0700). Objects appear whole: `put` writes a hidden temporary file and links it into place, which also
 * refuses a name that exists. Hidden files and anything that is not a regular file are not objects.
 */
export class FsArchive implements RecordingArchive {
  readonly root: string;

  constructor(options: FsArchiveOptions) {
    this.root = resolve(options.root);
  }

  /** The file of object `name`; throws ARCHIVE_BAD_NAME for a name that would leave the root. */
  pathOf(name: string): string {
    checkObjectName(name);
    return join(this.root, name);
  }

  async put(name: string, body: ArchiveBody): Promise<void> {
    const path = this.pathOf(name);
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const temp = join(dirname(path), `.${randomBytes(8).toString('hex')}.put.tmp`);
    const handle = await open(temp, 'wx', 0o600);
    try {
      try {
        if (Buffer.isBuffer(body)) await writeFully(handle, body);
        else for await (const chunk of body) await writeFully(handle, Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await this.#linkInto(temp, path, name);
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }

  async get(name: string): Promise<Readable> {
    const handle = await this.#openForReading(name);
    return handle.createReadStream({ highWaterMark: READ_STREAM_CHUNK, autoClose: true });
  }

  async range(name: string, offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`A range needs a non-negative offset and length (got ${offset}, ${length})`);
    }
    const handle = await this.#openForReading(name);
    try {
      const out = Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(out, filled, length - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return out.subarray(0, filled);
    } finally {
      await handle.close();
    }
  }

  async list(prefix: string, options: ArchiveListOptions = {}): Promise<ArchivePage> {
    checkListPrefix(prefix);
    const limit = Math.min(Math.max(1, options.limit ?? MAX_LIST_PAGE), MAX_LIST_PAGE);
    const after = options.after;
    const objects: ArchiveObject[] = [];
    // Only the directory the prefix names can hold matches: walk from there, not from the root.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash + 1);
    for await (const object of this.#walk(base, prefix, after)) {
      if (objects.length === limit) return { objects, next: objects.at(-1)!.name };
      objects.push(object);
    }
    return { objects };
  }

  /**
   * Zeroes the head of the file, syncs, then unlinks it. A session file of format 1 carries its wrapped
   * data key in its header, so for it removing the file is the erasure; an unlink alone frees the name,
   * not the blocks, and another link to the file (a snapshot, a hard-linked backup) would keep the key.
   */
  async delete(name: string): Promise<void> {
    const path = this.pathOf(name);
    const handle = await openIfPresent(path, 'r+');
    if (handle === undefined) return;
    try {
      const { size } = await handle.stat();
      // Never past the end: a zeroed head must not grow a small object.
      const head = Math.min(size, ERASED_HEAD_BYTES);
      if (head > 0) {
        await writeFully(handle, Buffer.alloc(head), 0);
        await handle.sync();
      }
    } finally {
      await handle.close();
    }
    await rm(path, { force: true });
  }

  /** A rename within the root's file system: the spool's file becomes the object without a copy. */
  async adoptFile(path: string, name: string): Promise<void> {
    const target = this.pathOf(name);
    if (resolve(path) === target) return;
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    await this.#linkInto(path, target, name);
    await unlink(path);
  }

  /** Links `from` to `to` (refusing an existing `to`) and syncs the directory, so the new name survives a crash. */
  async #linkInto(from: string, to: string, name: string): Promise<void> {
    try {
      await link(from, to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ArchiveError('ARCHIVE_EXISTS', name, `Archive object ${name} exists; sealed objects are never replaced`, { cause: err });
      throw err;
    }
    const dir = await open(dirname(to), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async #openForReading(name: string): Promise<FileHandle> {
    const handle = await openIfPresent(this.pathOf(name), 'r');
    if (handle === undefined) throw notFound(name);
    if (!(await handle.stat()).isFile()) {
      await handle.close();
      throw notFound(name);
    }
    return handle;
  }

  /**
   * Objects under directory `dir` (relative, '' or ending in '/') whose names start with `prefix` and
   * sort after `after`, in name order. Entries are ordered as their full names sort: a directory `a` as
   * `a/`, so everything under it lands exactly where S3's flat key order puts it.
   */
  async *#walk(dir: string, prefix: string, after: string | undefined): AsyncGenerator<ArchiveObject> {
    let entries;
    try {
      entries = await readdir(join(this.root, dir), { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw err;
    }
    const keyed = entries
      .filter((e) => !e.name.startsWith('.') && (e.isFile() || e.isDirectory()))
      .map((e) => ({ entry: e, key: `${dir}${e.name}${e.isDirectory() ? '/' : ''}` }))
      .sort((a, b) => compareNames(a.key, b.key));
    for (const { entry, key } of keyed) {
      if (entry.isDirectory()) {
        // Skip subtrees that cannot hold a match, or that lie wholly before `after`.
        if (!key.startsWith(prefix) && !prefix.startsWith(key)) continue;
        if (after !== undefined && compareNames(key, after) < 0 && !after.startsWith(key)) continue;
        yield* this.#walk(key, prefix, after);
        continue;
      }
      if (!key.startsWith(prefix) || (after !== undefined && compareNames(key, after) <= 0)) continue;
      try {
        checkObjectName(key);
      } catch {
        continue; // a file no object could be named after (spaces, say) was not put here by the archive
      }
      let size: number;
      try {
        size = (await stat(join(this.root, key.split('/').join(sep)))).size;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // deleted while listing
        throw err;
      }
      yield { name: key, size };
    }
  }
}

/** Byte order of UTF-8 names, which S3 lists keys in (`localeCompare` would not). */
function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The file at `path`, opened; undefined when it (or a directory on its way) does not exist. */
async function openIfPresent(path: string, flags: 'r' | 'r+'): Promise<FileHandle | undefined> {
  try {
    return await open(path, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

function notFound(name: string): ArchiveError {
  return new ArchiveError('ARCHIVE_NOT_FOUND', name, `No archive object ${name}`);
}

/** Writes all of `bytes` (at `position`, else where the file is): a write may report fewer bytes than asked without failing. */
async function writeFully(handle: FileHandle, bytes: Buffer, position?: number): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, position === undefined ? null : position + offset);
    if (bytesWritten <= 0) throw Object.assign(new Error('the disk accepted no bytes'), { code: 'EIO' });
    offset += bytesWritten;
  }
}
