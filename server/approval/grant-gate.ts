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
  readonly store: Pick<Store, 'activeGrant'>;
  readonly clock?: () => number;
}

/** Admits callers to connections that say `requires_grant: true`. */
export interface GrantGate {
  /** The caller's active grant; undefined when the connection needs none; ERR_GRANT_REQUIRED when it needs one and there is none. */
  check(principal: Principal, connection: GrantedConnection): Promise<Grant | undefined>;
  /**
   * Calls `onEnd` when the caller's grants on the connection have all ended (a newer grant extends the
   * watch). Returns the function that stops watching.
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
      const arm = (until: number): void => {
        timer = setTimeout(() => void tick(), Math.min(Math.max(until - clock(), 0), MAX_TIMER_MS));
        timer.unref();
      };
      const tick = async (): Promise<void> => {
        if (stopped) return;
        const next = await store.activeGrant(principal.sub, connection.name, clock()).catch(() => undefined);
        if (stopped) return;
        if (next !== undefined) return arm(next.expiresAt);
        onEnd(
          new SluiceError('ERR_GRANT_EXPIRED', {
            message: `Your access grant to "${connection.name}" ended; request a new one with \`sluice access request ${connection.name}\``,
            details: { connection: connection.name },
          }),
        );
      };
      arm(grant.expiresAt);
      return () => {
        stopped = true;
        clearTimeout(timer);
      };
    },
  };
}
