import { systemClock, type Clock } from '../clock.js';
import type { Store } from '../store/store.js';
import { runUnderLease } from './lease.js';

/** The lease only one replica at a time sweeps under. */
export const SWEEPS_LEASE = 'sweeps';

/** Pending reviews abandoned per read of the store. */
const REVIEW_PAGE = 100;

/** The minimal logger the sweeps report to. */
export interface SweepsLog {
  warn(obj: object, msg: string): void;
}

/** Options of {@link createReplicaSweeps}. */
export interface ReplicaSweepsOptions {
  readonly store: Pick<Store, 'replicasWithOpenState' | 'liveReplicas' | 'acquireLease' | 'releaseLease' | 'listReviews' | 'clearTunnelSlots'>;
  /** This replica's id: the lease holder, and never swept by itself. */
  readonly replica: string;
  /** `replica.dead_after`: a replica not seen for this long is dead. */
  readonly deadAfterMs: number;
  /** Marks a dead replica's open sessions interrupted; resolves to their ids. Absent without storage (no sessions). */
  readonly interruptSessions?: (replica: string, at: number) => Promise<readonly string[]>;
  /** Ends a pending review as abandoned and tells webhooks, as any abandonment does; undefined when it was decided first. */
  readonly abandonReview: (id: string, reason: string) => Promise<unknown>;
  /** What "not seen for dead_after" is judged by. Default: the system clock. */
  readonly clock?: Clock;
  readonly log?: SweepsLog;
}

/** What one sweep did to one dead replica's state. */
export interface DeadReplicaSwept {
  readonly replica: string;
  /** Its `open` sessions, now `interrupted`. */
  readonly sessions: readonly string[];
  /** Its pending reviews, now `abandoned`. */
  readonly reviews: readonly string[];
  /** How many of its tunnel slots were freed. */
  readonly slots: number;
}

/** The sweep of dead replicas' state. */
export interface ReplicaSweeps {
  /**
   * Sweeps once, under the lease `sweeps`: resolves to what it did to each dead replica (empty when none
   * was found), or undefined when another replica holds the lease and sweeps instead.
   */
  sweep(): Promise<DeadReplicaSwept[] | undefined>;
}

/**
 * Cleans up after replicas that stopped without closing their state (a crash, a killed pod, a host that is
 * gone): for every replica that owns open state but has not been seen for `dead_after`, its open sessions
 * are marked interrupted, the reviews of requests it held are abandoned (their callers were connected to it,
 * so nothing is forwarded) and its tunnel slots are freed, so its users are not held at
 * `tunnel.max_per_user` by tunnels that no longer exist.
 */
export function createReplicaSweeps(options: ReplicaSweepsOptions): ReplicaSweeps {
  const { store, replica, deadAfterMs } = options;
  const clock = options.clock ?? systemClock;

  /** Whether `other` was seen within `dead_after` of now: read again just before its state is touched. */
  const isLive = async (other: string, at: number): Promise<boolean> => (await store.liveReplicas(at - deadAfterMs)).includes(other);

  async function abandonReviewsOf(dead: string): Promise<string[]> {
    const abandoned: string[] = [];
    const tried = new Set<string>();
    for (;;) {
      const page = (await store.listReviews({ status: 'pending', replica: dead, limit: REVIEW_PAGE })).filter((r) => !tried.has(r.id));
      if (page.length === 0) return abandoned;
      for (const review of page) {
        tried.add(review.id);
        if ((await options.abandonReview(review.id, `the gateway replica holding the request (${dead}) stopped`)) !== undefined) abandoned.push(review.id);
      }
    }
  }

  async function sweepReplica(dead: string, at: number): Promise<DeadReplicaSwept> {
    const sessions = (await options.interruptSessions?.(dead, at)) ?? [];
    const reviews = await abandonReviewsOf(dead);
    const slots = await store.clearTunnelSlots(dead);
    return { replica: dead, sessions, reviews, slots };
  }

  return {
    async sweep() {
      const run = await runUnderLease(
        store,
        SWEEPS_LEASE,
        replica,
        deadAfterMs,
        async (signal) => {
          const at = clock.now();
          const live = new Set(await store.liveReplicas(at - deadAfterMs));
          // Never itself: a replica whose own heartbeats fail is still running its sessions.
          live.add(replica);
          const dead = (await store.replicasWithOpenState()).filter((r) => !live.has(r));
          const swept: DeadReplicaSwept[] = [];
          for (const other of dead) {
            // Another sweeper took the lease (this one stalled): the rest is its to do.
            if (signal.aborted) break;
            // A replica that came back (a restart under the same id) since the first read keeps its state.
            if (await isLive(other, clock.now())) continue;
            const done = await sweepReplica(other, at);
            swept.push(done);
            options.log?.warn(
              { replica: other, sessions: done.sessions, reviews: done.reviews, tunnel_slots: done.slots, swept_by: replica },
              `replica ${other} stopped without closing its state (not seen for ${deadAfterMs} ms): its open sessions are marked interrupted, its held requests abandoned and its tunnel slots freed`,
            );
          }
          return swept;
        },
        clock,
      );
      return run.ran ? run.value : undefined;
    },
  };
}
