import { stat } from 'node:fs/promises';
import type { RecordingLog } from './recording-log.js';

/**
 * Warns when `storage.dir` lets its group or others in. Every file the gateway writes there is 0600, but
 * a directory it did not create keeps the mode it was given (0755 is common), and then anyone on the host
 * can list session ids, dates and names. Left as it is, because a shared group may be deliberate.
 */
export async function warnIfStorageDirShared(dir: string, log: RecordingLog | undefined): Promise<void> {
  const mode = (await stat(dir)).mode & 0o777;
  if ((mode & 0o077) === 0) return;
  log?.warn(
    { path: dir, mode: `0${mode.toString(8)}` },
    `storage.dir ${dir} has mode 0${mode.toString(8)}: its group or others can list it; chmod 700 it so only the gateway's user can`,
  );
}
