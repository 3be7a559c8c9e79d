import type { SluiceError } from '../../shared/errors.js';
import type { OpenSessionFile } from './open-session-file.js';

/**
 * What the pipeline's durable recorder needs of the recording: the open sessions it appends to, why
 * storage fails (for the refusal it sends), and a nudge to batch index progress. Narrow, so the recorder
 * does not depend on the whole recording (which creates it).
 */
export interface RecorderSessions {
  /** The open session with this id (a promise while it opens), if any. */
  session(id: string): Promise<OpenSessionFile> | undefined;
  /** Why storage is failing, or undefined while it works. */
  readonly failureCause: string | undefined;
  /** Notes that a session has index progress to write; writes are batched. */
  progressChanged(): void;
  /** Why a new exchange must be refused although its session is open (the spool is full), or undefined. */
  admission?(): SluiceError | undefined;
}
