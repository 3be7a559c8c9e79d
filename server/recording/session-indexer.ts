import type { NewSession, SessionSeal, Store, WrappedSessionKey } from '../store/store.js';
import { describeStorageFailure } from './recording-error.js';
import type { RecordingLog } from './recording-log.js';
import type { OpenSessionFile } from './open-session-file.js';

/** Options of the indexer; defaults are resolved by the recording. */
export interface SessionIndexerOptions {
  /** The session index; owned (and closed) by the caller. */
  readonly store: Store;
  /** How often index progress is written; progress of every open session goes in one batch. */
  readonly progressIntervalMs: number;
  /** The sessions that may hold progress not yet written (the recording's open sessions). */
  readonly openSessions: () => Iterable<Promise<OpenSessionFile>>;
  /** Told the outcome of index writes that fail (for readiness). */
  readonly onFailure: (error: unknown) => void;
  readonly log: RecordingLog;
}

/**
 * Keeps the index in step with the recording: a session's key and row when it opens, its progress
 * (counters, tokens, models) in batches while it runs, its seal when it ends. A failed progress write is
 * kept and retried with the next batch; nothing here refuses an exchange.
 */
export class SessionIndexer {
  readonly #o: SessionIndexerOptions;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: SessionIndexerOptions) {
    this.#o = options;
  }

  /**
   * Indexes a new session: its wrapped data key, then its row. A key without a row is removed again, so
   * a session that failed to open leaves nothing behind; rejects with the store's error.
   */
  async open(row: NewSession, key: WrappedSessionKey): Promise<void> {
    const { store } = this.#o;
    await store.putSessionKey(row.id, key);
    try {
      await store.createSession(row);
    } catch (err) {
      await store.deleteSessionKey(row.id).catch(() => undefined);
      throw err;
    }
  }

  /** Notes that a session has progress to write; writes are batched. */
  changed(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flushAll();
    }, this.#o.progressIntervalMs);
    this.#timer.unref();
  }

  /** Writes a session's last progress, then its seal. A failure is reported, never thrown: the file is the evidence. */
  async seal(session: OpenSessionFile, seal: SessionSeal): Promise<void> {
    await this.flush(session);
    try {
      await this.#o.store.closeSession(session.id, seal);
    } catch (err) {
      this.#o.onFailure(err);
      this.#o.log.warn({ session: session.id, err: describeStorageFailure(err) }, 'the index could not record the end of a session');
    }
  }

  /** Writes every open session's pending progress. */
  async flushAll(): Promise<void> {
    for (const opening of [...this.#o.openSessions()]) {
      const session = await opening.catch(() => undefined);
      if (session !== undefined) await this.flush(session);
    }
  }

  /** Writes one session's pending progress; what the store does not take is put back and retried. */
  async flush(session: OpenSessionFile): Promise<void> {
    const progress = session.takeProgress();
    if (progress === undefined) return;
    try {
      await this.#o.store.updateSession(session.id, progress);
    } catch (err) {
      session.restoreProgress(progress);
      this.#o.onFailure(err);
      this.changed();
    }
  }

  /** Stops batching and writes what is pending. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flushAll();
  }
}
