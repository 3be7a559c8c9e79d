/**
 * The archive: where sealed session files live, as whole immutable objects addressed by name
 * (`sessions/YYYY/MM/DD/<id>.rec`). One contract serves a directory (`FsArchive`) and, later, an
 * S3-compatible bucket; both pass `test/helpers/archive-conformance.ts`. Open sessions are appended in
 * the local spool and handed over when sealed; meanwhile their records go up as segment objects beside
 * the session's name (segment-format.ts), themselves whole immutable objects like any other. When the spool and a directory archive share one root
 * (`storage.dir`, the default), an open session's file already lies at its object name, so it is
 * listed and read as an object before it is sealed.
 */
import type { Readable } from 'node:stream';

/** An object's bytes for `put`: whole, or streamed. */
export type ArchiveBody = Buffer | Readable | AsyncIterable<Uint8Array>;

/** One object of a listing. */
export interface ArchiveObject {
  readonly name: string;
  /** Bytes. */
  readonly size: number;
}

/** A page of a listing, in name order (byte order of the UTF-8 names, as S3 lists keys). */
export interface ArchivePage {
  readonly objects: readonly ArchiveObject[];
  /** Pass as `after` for the next page; absent on the last page. */
  readonly next?: string;
}

/** Options of `list`. */
export interface ArchiveListOptions {
  /** Only names after this one (the `next` of the previous page). */
  readonly after?: string;
  /** Page size; default 1000 (an S3 page), at most 1000. */
  readonly limit?: number;
}

/** What readers of recordings need: an object whole (streamed) or a range of it. */
export interface ArchiveReader {
  /** The object's bytes as a stream; rejects with ArchiveError `ARCHIVE_NOT_FOUND` when there is none. */
  get(name: string): Promise<Readable>;
  /**
   * Up to `length` bytes from `offset`: fewer where the object ends, none from its end on.
   * Rejects with `ARCHIVE_NOT_FOUND` when there is no object.
   */
  range(name: string, offset: number, length: number): Promise<Buffer>;
}

/** The archive of sealed session files. */
export interface RecordingArchive extends ArchiveReader {
  /**
   * Stores a whole object under a new name. Sealed evidence is never replaced: an existing name is refused
   * with `ARCHIVE_EXISTS`. A put that fails leaves no object behind, so it can be retried.
   */
  put(name: string, body: ArchiveBody): Promise<void>;
  /** Objects whose names start with `prefix`, paged. */
  list(prefix: string, options?: ArchiveListOptions): Promise<ArchivePage>;
  /** Removes an object; removing one that is not there succeeds (a retried sweep must not fail). */
  delete(name: string): Promise<void>;
  /**
   * Takes over a finished local file as the object `name`, when the archive can do so without a copy
   * (a rename on the same file system). Archives that cannot leave it undefined, and get a `put`.
   */
  adoptFile?(path: string, name: string): Promise<void>;
}

/** Why an archive operation was refused. */
export type ArchiveErrorCode =
  /** No object has that name. */
  | 'ARCHIVE_NOT_FOUND'
  /** `put` of a name that is taken. */
  | 'ARCHIVE_EXISTS'
  /** A name or prefix that is not a plain relative path: `..`, absolute, NUL, empty segments, hidden. */
  | 'ARCHIVE_BAD_NAME';

/** An archive failure callers can switch on by `code`; the name it concerns is kept. */
export class ArchiveError extends Error {
  readonly code: ArchiveErrorCode;
  readonly object: string;
  constructor(code: ArchiveErrorCode, object: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ArchiveError';
    this.code = code;
    this.object = object;
  }
}

/** Whether `err` says the object is not there. */
export function isArchiveNotFound(err: unknown): err is ArchiveError {
  return err instanceof ArchiveError && err.code === 'ARCHIVE_NOT_FOUND';
}

/**
 * Whether `err` says the object cannot be had by that name: it is not there, or the name is one no object
 * can have (a name from an edited index row or seal entry), which readers report as a missing file.
 */
export function isMissingObject(err: unknown): err is ArchiveError {
  return err instanceof ArchiveError && (err.code === 'ARCHIVE_NOT_FOUND' || err.code === 'ARCHIVE_BAD_NAME');
}

/** The most objects one page lists, as in S3. */
export const MAX_LIST_PAGE = 1000;
const MAX_NAME_LENGTH = 1024;
/**
 * A segment: letters, digits, `.`, `_`, `-`, not starting with a dot. No `.` or `..`, and no hidden
 * names, so temporary files beside objects (`.x.tmp`) are never objects themselves.
 */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

function badName(name: string, why: string): ArchiveError {
  return new ArchiveError('ARCHIVE_BAD_NAME', name, `Archive name ${JSON.stringify(name)} is refused: ${why}`);
}

/** Throws ARCHIVE_BAD_NAME unless `name` is a plain relative path of safe segments. */
export function checkObjectName(name: string): void {
  if (typeof name !== 'string' || name.length === 0) throw badName(String(name), 'it is empty');
  if (name.length > MAX_NAME_LENGTH) throw badName(name.slice(0, 64), `it is longer than ${MAX_NAME_LENGTH} characters`);
  if (name.includes('\0')) throw badName(name, 'it holds a NUL byte');
  if (name.startsWith('/') || name.includes('\\')) throw badName(name, 'it is not a relative path');
  for (const segment of name.split('/')) {
    if (!SEGMENT.test(segment)) throw badName(name, `segment ${JSON.stringify(segment)} is not a plain name (letters, digits, ".", "_", "-"; not hidden)`);
  }
}

/** Throws ARCHIVE_BAD_NAME unless `prefix` is empty, a name, or a name followed by `/`. */
export function checkListPrefix(prefix: string): void {
  if (prefix === '') return;
  checkObjectName(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
}

/** Every object under `prefix`, page by page. */
export async function* listAll(archive: Pick<RecordingArchive, 'list'>, prefix: string): AsyncGenerator<ArchiveObject> {
  let after: string | undefined;
  do {
    const page = await archive.list(prefix, after === undefined ? {} : { after });
    yield* page.objects;
    after = page.next;
  } while (after !== undefined);
}
