import { SluiceError } from '../../shared/errors.js';

/** Plain words for the errno codes storage fails with, so the 503 names the cause an operator can fix. */
const CAUSES: Record<string, string> = {
  ENOSPC: 'disk full',
  EDQUOT: 'disk quota exceeded',
  EIO: 'I/O error',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  EFBIG: 'file too large',
  ENOENT: 'storage directory missing',
  SQLITE_FULL: 'disk full (index)',
  SQLITE_IOERR: 'I/O error (index)',
  SQLITE_READONLY: 'read-only index',
  SQLITE_CANTOPEN: 'index cannot be opened',
};

/** The errno-like code of an error, if it has one. */
export function errorCodeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A short description of a storage failure: "disk full (ENOSPC)". */
export function describeStorageFailure(err: unknown): string {
  const code = errorCodeOf(err);
  if (code === undefined) return err instanceof Error ? err.message : String(err);
  const base = code.startsWith('SQLITE_IOERR') ? CAUSES.SQLITE_IOERR : CAUSES[code];
  return base === undefined ? `${code}: ${err instanceof Error ? err.message : String(err)}` : `${base} (${code})`;
}

/** The data-path error for a record that could not be written: 503 naming the cause, the original kept. */
export function recordingUnavailable(err: unknown, what = 'the recording'): SluiceError {
  if (err instanceof SluiceError && err.code === 'ERR_RECORDING_UNAVAILABLE') return err;
  // The index is the shared store: a database that is down is said as such, so the operator looks there and not at the disk.
  if (err instanceof SluiceError && err.code === 'ERR_STORE_UNAVAILABLE') return err;
  const cause = describeStorageFailure(err);
  return new SluiceError('ERR_RECORDING_UNAVAILABLE', {
    message: `${what[0]!.toUpperCase()}${what.slice(1)} cannot be written (${cause}); the exchange was refused`,
    details: { cause },
    cause: err,
  });
}
