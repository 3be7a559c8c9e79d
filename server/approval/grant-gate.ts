import { SluiceError } from '../../shared/errors.js';
import { MAX_TIMER_MS } from '../../shared/timers.js';
import type { Principal } from '../identity/principal.js';
import type { Store } from '../store/store.js';
import type { Grant } from './review.js';

/** The parts of a connection the gate reads. */
export interface GrantedConnection {
  readonly name: string;
  readonly requires_grant: boolean;
}

/** Options of {@link createGrantGate}. */
export interface GrantGateOptions {
  /** `feed` carries `grant.revoked` from every replica: the early wake-up of a watch. */
  readonly store: Pick<Store, 'activeGrant' | 'feed'>;
  readonly clock?: () => number;
}

/** Admits callers to connections that say `requires_grant: true`. */
export interface GrantGate {
  /** The caller's active grant; undefined when the connection needs none; ERR_GRANT_REQUIRED when it needs one and there is none. */
  check(principal: Principal, connection: GrantedConnection): Promise<Grant | undefined>;
  /**
   * Calls `onEnd` when the caller's grants on the connection have all ended (a newer grant extends the
   * watch): ERR_GRANT_EXPIRED at the end of the last, ERR_GRANT_REVOKED at once when a revocation (on any
   * replica, heard on the store's feed) leaves none. Returns the function that stops watching.
   */
  watch(principal: Principal, connection: GrantedConnection, grant: Grant, onEnd: (error: SluiceError) => void): () => void;
}

/** Creates the gate over the store's grants. */
export function createGrantGate(options: GrantGateOptions): GrantGate {
  const clock = options.clock ?? Date.now;
  const { store } = options;

  return {
    async check(principal, connection) {
      if (!connection.requires_grant) return undefined;
      const grant = await store.activeGrant(principal.sub, connection.name, clock());
      if (grant === undefined) {
        throw new SluiceError('ERR_GRANT_REQUIRED', {
          message: `Connection "${connection.name}" needs an approved access grant: run \`sluice access request ${connection.name} --for 1h --reason "…"\` and wait for a reviewer`,
          details: { connection: connection.name },
        });
      }
      return grant;
    },
    watch(principal, connection, grant, onEnd) {
      let timer: NodeJS.Timeout | undefined;
      let stopped = false;
      // Each check supersedes the ones before it: a slow read started by the timer must not re-arm a watch
      // that a revocation's read has already ended, or end one a newer grant extended.
      let checks = 0;
      const arm = (until: number): void => {
        clearTimeout(timer);
        timer = setTimeout(() => void check(false), Math.min(Math.max(until - clock(), 0), MAX_TIMER_MS));
        timer.unref();
      };
      const end = (revoked: boolean): void => {
        stop();
        onEnd(
          revoked
            ? new SluiceError('ERR_GRANT_REVOKED', {
                message: `Your access grant to "${connection.name}" was revoked; request a new one with \`sluice access request ${connection.name}\``,
                details: { connection: connection.name },
              })
            : new SluiceError('ERR_GRANT_EXPIRED', {
                message: `Your access grant to "${connection.name}" ended; request a new one with \`sluice access request ${connection.name}\``,
                details: { connection: connection.name },
              }),
        );
      };
      const check = async (revoked: boolean, at = clock()): Promise<void> => {
        if (stopped) return;
        const mine = ++checks;
        const next = await store.activeGrant(principal.sub, connection.name, at).catch(() => undefined);
        if (stopped || mine !== checks) return;
        if (next !== undefined) return arm(next.expiresAt);
        end(revoked);
      };
      const unsubscribe = store.feed.subscribe((event) => {
        const ended = event.grant;
        if (event.type !== 'grant.revoked' || ended === undefined) return;
        if (ended.sub !== principal.sub || ended.connection !== connection.name) return;
        // At the revocation's time at the earliest: a replica whose clock lags the revoker's still sees the grant over.
        void check(true, Math.max(clock(), ended.expiresAt));
      });
      const stop = (): void => {
        stopped = true;
        clearTimeout(timer);
        unsubscribe();
      };
      arm(grant.expiresAt);
      return stop;
    },
  };
}
