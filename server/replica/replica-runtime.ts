import type { Clock } from '../clock.js';
import { parseDuration } from '../config/duration.js';
import type { Recording } from '../recording/recording.js';
import type { Store } from '../store/store.js';
import type { ReplicaConfig } from './replica-config.js';
import { ReplicaPresence, type PresenceLog } from './replica-presence.js';
import { createReplicaSweeps, type DeadReplicaSwept } from './replica-sweeps.js';

/** This gateway as one replica among those sharing a store: `app.replica`. */
export interface ReplicaRuntime {
  /** This process's replica id. */
  readonly id: string;
  /** Sweeps dead replicas' state now (as the timer does after each heartbeat); undefined when another replica holds the lease. */
  sweepNow(): Promise<DeadReplicaSwept[] | undefined>;
  /**
   * Runs the retention sweep now for sessions past retention at `at` (default now); 0 without retention or
   * storage, undefined when another replica holds the lease.
   */
  retentionNow(at?: number): Promise<number | undefined>;
  /** Stops the heartbeats and sweeps (the gateway is closing). */
  stop(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** This gateway as one replica among those sharing its store. */
    readonly replica: ReplicaRuntime;
  }
}

/** Options of {@link startReplicaRuntime}. */
export interface ReplicaRuntimeOptions {
  /** The store every replica shares. */
  readonly store: Store;
  /** This process's replica id (`replicaIdOf`). */
  readonly id: string;
  readonly config: ReplicaConfig;
  readonly clock: Clock;
  /** The recording, when there is storage: its sessions and its retention sweep. */
  readonly recording?: Pick<Recording, 'interruptSessionsOf' | 'sweep'>;
  /** Ends a review as abandoned and tells webhooks (the approval service's `abandon`). */
  readonly abandonReview: (id: string, reason: string) => Promise<unknown>;
  readonly log?: PresenceLog;
}

/**
 * Starts this replica's presence: its first heartbeat (awaited, so no other replica takes it for dead once
 * it serves), then a heartbeat every `replica.heartbeat_interval`, each followed by a sweep of dead
 * replicas' state under the lease `sweeps`.
 */
export async function startReplicaRuntime(options: ReplicaRuntimeOptions): Promise<ReplicaRuntime> {
  const { id, clock } = options;
  const presence = new ReplicaPresence({ store: options.store, replica: id, intervalMs: parseDuration(options.config.heartbeat_interval), clock, log: options.log });
  const recording = options.recording;
  const sweeps = createReplicaSweeps({
    store: options.store,
    replica: id,
    deadAfterMs: parseDuration(options.config.dead_after),
    ...(recording === undefined ? {} : { interruptSessions: (dead: string, at: number) => recording.interruptSessionsOf(dead, at) }),
    abandonReview: options.abandonReview,
    clock,
    log: options.log,
  });
  presence.afterBeat(async () => {
    await sweeps.sweep();
  });
  await presence.start();
  return {
    id,
    sweepNow: () => sweeps.sweep(),
    retentionNow: (at) => recording?.sweep(at) ?? Promise.resolve(0),
    stop: () => presence.stop(),
  };
}
