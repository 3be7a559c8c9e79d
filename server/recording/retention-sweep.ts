import type { Store } from '../store/store.js';
import type { RecordingArchive } from './archive/archive.js';
import { describeStorageFailure } from './recording-error.js';
import type { RecordingLog } from './recording-log.js';
import type { SealLog } from './seal-log.js';

/** Options of the retention sweep; defaults are resolved by the recording. */
export interface RetentionSweepOptions {
  readonly store: Store;
  readonly archive: RecordingArchive;
  readonly sealLog: SealLog;
  /** Sealed sessions that started longer ago than this are destroyed. */
  readonly retentionDays: number;
  /** How often the sweep runs. */
  readonly intervalMs: number;
  readonly log: RecordingLog;
}

/** Sessions destroyed per round (and per signed checkpoint). */
const BATCH = 100;

/**
 * Destroys sessions past retention. Erasure is the deletion of the session's wrapped data key from the
 * index: from then on no copy of the file (a backup, a replica, an undeleted block) opens. The archive
 * object and the index row go after it. A session written before format 2 carries its key in its file,
 * so for those deleting the object is the erasure.
 */
export class RetentionSweep {
  readonly #o: RetentionSweepOptions;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: RetentionSweepOptions) {
    this.#o = options;
  }

  /** Runs now, then every `intervalMs`; a failed run is logged and retried at the next. */
  start(): void {
    const run = (): void => {
      this.sweep().catch((err: unknown) => this.#o.log.warn({ err: describeStorageFailure(err) }, 'retention sweep failed'));
    };
    run();
    this.#timer = setInterval(run, this.#o.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Destroys every sealed session that started before `now` minus the retention; resolves to how many. */
  async sweep(now = Date.now()): Promise<number> {
    const { store, archive, sealLog } = this.#o;
    const before = now - this.#o.retentionDays * 86_400_000;
    let destroyed = 0;
    for (;;) {
      const batch = await store.expiredSessions(before, BATCH);
      if (batch.length === 0) return destroyed;
      for (const s of batch) {
        // Logged first: a session that vanishes with no entry saying so reads as tampered with.
        await sealLog.append({ type: 'destroyed', session: s.id, at: Date.now() });
        await store.deleteSessionKey(s.id);
        await archive.delete(s.file);
        await store.deleteSession(s.id);
        destroyed++;
      }
      // Signed at once: a verifier trusts a `destroyed` entry only when a checkpoint covers it.
      await sealLog.checkpoint();
      this.#o.log.info({ sessions: batch.map((s) => s.id) }, 'expired sessions destroyed');
    }
  }
}
