import { SESSION_FILE_SUFFIX } from './record-format.js';

/**
 * Names under `storage.dir`, in one place so the offline verifier can find them without loading the
 * gateway's recording (and with it the pipeline and SQLite).
 */

/** Where session files live: the prefix of their archive names. */
export const SESSIONS_DIR = 'sessions';

/** File name of the SQLite index under `storage.dir`. */
export const INDEX_FILE = 'index.sqlite';

/** A session's archive name (its file relative to `storage.dir`): `sessions/YYYY/MM/DD/<id>.rec` by the UTC start date. */
export function sessionObjectName(id: string, startedAt: number): string {
  const d = new Date(startedAt);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${SESSIONS_DIR}/${d.getUTCFullYear()}/${two(d.getUTCMonth() + 1)}/${two(d.getUTCDate())}/${id}${SESSION_FILE_SUFFIX}`;
}
