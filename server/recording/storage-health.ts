import type { ReadinessCheck } from '../readiness.js';
import { describeStorageFailure } from './recording-error.js';
import type { RecordingLog } from './recording-log.js';

/** Options of the storage health. */
export interface StorageHealthOptions {
  /** Writes and syncs something where sessions are written; rejects while that fails. */
  readonly probe: () => Promise<void>;
  readonly log: RecordingLog;
}

/**
 * Whether recording storage works, from the outcome of every write: one failure makes the gateway
 * unready (exchanges are refused with the cause) until a write, or the readiness probe, succeeds.
 */
export class StorageHealth {
  readonly #o: StorageHealthOptions;
  #failure: { cause: string; since: number } | undefined;

  constructor(options: StorageHealthOptions) {
    this.#o = options;
  }

  /** Why storage is failing (`disk full (ENOSPC)`), or undefined while it works. */
  get failureCause(): string | undefined {
    return this.#failure?.cause;
  }

  /** Records the outcome of a storage operation: null or undefined for a success. */
  report(error: unknown): void {
    if (error === null || error === undefined) {
      if (this.#failure !== undefined) this.#o.log.info({ was: this.#failure.cause }, 'recording storage is writable again');
      this.#failure = undefined;
    } else if (this.#failure === undefined) {
      const cause = describeStorageFailure(error);
      this.#failure = { cause, since: Date.now() };
      this.#o.log.warn({ cause }, 'recording storage failed: exchanges are refused until it recovers');
    }
  }

  /** The `recording` readiness check. While storage is failing it probes, so recovery needs no traffic. */
  async check(): Promise<ReadinessCheck> {
    if (this.#failure !== undefined) {
      try {
        await this.#o.probe();
        this.report(null);
      } catch (err) {
        return { ok: false, message: `recording storage unwritable since ${new Date(this.#failure.since).toISOString()}: ${describeStorageFailure(err)}` };
      }
    }
    return { ok: true };
  }
}
