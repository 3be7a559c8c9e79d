import type { TimedCall } from '../../shared/timers.js';
import { systemClock, type Clock } from '../clock.js';
import type { Store } from '../store/store.js';

/** The minimal logger presence reports to. */
export interface PresenceLog {
  warn(obj: object, msg: string): void;
}

/** Options of {@link ReplicaPresence}; defaults are resolved here. */
export interface ReplicaPresenceOptions {
  readonly store: Pick<Store, 'heartbeat'>;
  /** This replica's id. */
  readonly replica: string;
  /** `replica.heartbeat_interval`. */
  readonly intervalMs: number;
  /** What heartbeats are stamped and timed by. Default: the system clock. */
  readonly clock?: Clock;
  readonly log?: PresenceLog;
}

/**
 * Tells the replicas sharing a store that this one is alive: a heartbeat every `intervalMs` on one unref'd
 * timer of the clock, which also runs the replica's periodic work (`afterBeat`) so a replica keeps one
 * timer, not one per job. The work never delays the next heartbeat: a long sweep must not make this
 * replica look dead to the others.
 */
export class ReplicaPresence {
  readonly replica: string;
  readonly #o: ReplicaPresenceOptions;
  readonly #clock: Clock;
  readonly #work: Array<() => Promise<void>> = [];
  #timer: TimedCall | undefined;
  #beating: Promise<void> | undefined;
  #working: Promise<void> | undefined;
  #stopped = false;

  constructor(options: ReplicaPresenceOptions) {
    this.#o = options;
    this.replica = options.replica;
    this.#clock = options.clock ?? systemClock;
  }

  /** Work to run after each heartbeat; a run still going when the next beat comes is not started twice. */
  afterBeat(work: () => Promise<void>): void {
    this.#work.push(work);
  }

  /**
   * Writes the first heartbeat and starts the timer. Awaited before the gateway serves, and a failure stops
   * the start: a replica the others cannot see alive would have its sessions swept as a dead one's.
   */
  async start(): Promise<void> {
    await this.#o.store.heartbeat(this.replica, this.#clock.now());
    this.#schedule();
  }

  /** Stops the timer and waits for the heartbeat and work in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    await this.#beating;
    await this.#working;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#clock.at(this.#clock.now() + this.#o.intervalMs, () => {
      this.#beating = this.#beat().finally(() => (this.#beating = undefined));
    });
  }

  async #beat(): Promise<void> {
    // The next beat is timed from this one, not from when the store answers: a slow write must not stretch the interval.
    this.#schedule();
    try {
      await this.#o.store.heartbeat(this.replica, this.#clock.now());
    } catch (err) {
      this.#o.log?.warn({ replica: this.replica, err: (err as Error)?.message ?? String(err) }, 'the replica heartbeat could not be written; it is retried at the next one');
    }
    if (this.#working !== undefined || this.#stopped) return;
    this.#working = this.#runWork().finally(() => (this.#working = undefined));
  }

  async #runWork(): Promise<void> {
    for (const work of this.#work) {
      try {
        await work();
      } catch (err) {
        this.#o.log?.warn({ replica: this.replica, err: (err as Error)?.message ?? String(err) }, 'periodic replica work failed; it runs again after the next heartbeat');
      }
    }
  }
}
