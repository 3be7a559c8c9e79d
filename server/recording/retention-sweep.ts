import type { AuditEvents } from '../audit-sinks/audit-events.js';
import type { Clock } from '../clock.js';
import { runUnderLease } from '../replica/lease.js';
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
  /** This replica's id: the holder of the lease `retention` while it sweeps. */
  readonly replica: string;
  /** What the lease and the retention cutoff are timed by. */
  readonly clock: Clock;
  readonly log: RecordingLog;
  /** Told `admin.erase` for each session destroyed. Default: nothing told. */
  readonly audit?: AuditEvents;
}

/** Sessions destroyed per round (and per signed checkpoint). */
const BATCH = 100;

/** The lease only one replica at a time sweeps retention under. */
export const RETENTION_LEASE = 'retention';

/** How long the lease outlives a holder that died mid-sweep; renewed while a long sweep runs. */
const RETENTION_LEASE_TTL_MS = 300_000;

/**
 * Destroys sessions past retention. Erasure is the deletion of the session's wrapped data key from the
 * index (the store leaves no copy in its own files, Store.deleteSessionKey): from then on no copy of the
 * session file made without the index opens. A backup of `storage.dir` holds the index too, so the
 * sessions it holds stay readable from it until the backup itself expires. The archive object and the
 * index row go after the key. A session written before format 2 carries its key in its file's header,
 * which the archive zeroes before it removes the object (FsArchive.delete). Every replica runs it on its
 * timer, but only the holder of the lease `retention` sweeps: two replicas destroying the same session
 * would each log it.
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

  /**
   * Destroys every sealed session that started before `now` minus the retention, under the lease
   * `retention`; resolves to how many, or undefined when another replica holds the lease (and sweeps).
   */
  async sweep(now = this.#o.clock.now()): Promise<number | undefined> {
    const run = await runUnderLease(this.#o.store, RETENTION_LEASE, this.#o.replica, RETENTION_LEASE_TTL_MS, (lost) => this.#destroyExpired(now, lost), this.#o.clock);
    return run.ran ? run.value : undefined;
  }

  async #destroyExpired(now: number, lost: AbortSignal): Promise<number> {
    const { store, archive, sealLog } = this.#o;
    const before = now - this.#o.retentionDays * 86_400_000;
    let destroyed = 0;
    for (;;) {
      // Whoever took the lease over lists the same sessions: one destroyer at a time.
      if (lost.aborted) return destroyed;
      const batch = await store.expiredSessions(before, BATCH);
      if (batch.length === 0) return destroyed;
      for (const s of batch) {
        // Logged first: a session that vanishes with no entry saying so reads as tampered with.
        await sealLog.append({ type: 'destroyed', session: s.id, at: Date.now() });
        await store.deleteSessionKey(s.id);
        await archive.delete(s.file);
        await store.deleteSession(s.id);
        // Told once it is gone: an erasure a SIEM never hears of is one nobody can account for.
        this.#o.audit?.emit('admin.erase', { session: s.id, by: 'retention', retention_days: this.#o.retentionDays });
        destroyed++;
      }
      // Signed at once: a verifier trusts a `destroyed` entry only when a checkpoint covers it.
      await sealLog.checkpoint();
      this.#o.log.info({ sessions: batch.map((s) => s.id) }, 'expired sessions destroyed');
    }
  }
}
