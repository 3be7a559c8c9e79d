import { parseDuration } from '../config/duration.js';
import type { Config } from '../config/schema.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { Store } from '../store/store.js';
import { createApprovalService, type ApprovalService } from './approval-service.js';
import { createGrantGate, type GrantGate } from './grant-gate.js';
import { createHeldRequests, type HeldExchange, type HeldRequests, type HeldRequestsOptions } from './held-requests.js';
import { createSessionNotices, type SessionNotices } from './session-notices.js';
import { createWebhookNotifier, type WebhookLog, type WebhookNotifier } from './webhook-notifier.js';

/** Options of {@link createApprovalSystem}. */
export interface ApprovalSystemOptions<X extends HeldExchange = HeldExchange> {
  /** The current configuration (read per use, so a reload takes effect). */
  readonly config: () => Config;
  /**
   * The gateway's store, where reviews and grants are kept; its owner closes it. Default: a throwaway
   * in-memory store the system closes (a gateway without storage has no connections, so nothing is held).
   */
  readonly store?: Store;
  /** Records review events into the held exchange's session (fail-closed). */
  readonly record?: HeldRequestsOptions<X>['record'];
  readonly log?: WebhookLog;
  readonly clock?: () => number;
}

/** Reviews, grants and their notifications, wired together once per gateway. */
export interface ApprovalSystem<X extends HeldExchange = HeldExchange> {
  readonly store: Store;
  readonly service: ApprovalService;
  readonly held: HeldRequests<X>;
  readonly grants: GrantGate;
  readonly notices: SessionNotices;
  readonly webhooks: WebhookNotifier;
  /** Withdraws held requests, stops webhook retries, closes the store when the system opened it. */
  close(): Promise<void>;
}

/** Creates the approval system of one gateway process. */
export function createApprovalSystem<X extends HeldExchange = HeldExchange>(options: ApprovalSystemOptions<X>): ApprovalSystem<X> {
  const { config } = options;
  const ownsStore = options.store === undefined;
  const store = options.store ?? new SqliteStore({ file: ':memory:' });
  const webhooks = createWebhookNotifier({ webhooks: () => config().approval.webhooks, log: options.log });
  const service = createApprovalService({
    store,
    limits: () => ({ perUser: config().approval.max_held_per_user, total: config().approval.max_held_total }),
    notify: (event) => webhooks.notify(event),
    clock: options.clock,
  });
  const notices = createSessionNotices();
  const held = createHeldRequests<X>({
    service,
    defaultTimeoutMs: () => parseDuration(config().approval.default_timeout),
    notifySession: (id, notice) => notices.notify(id, notice),
    record: options.record,
    resendWindowMs: () => parseDuration(config().approval.resend_window),
    clock: options.clock,
  });
  const grants = createGrantGate({ store, clock: options.clock });
  return {
    store,
    service,
    held,
    grants,
    notices,
    webhooks,
    async close() {
      await held.close();
      await webhooks.close();
      if (ownsStore) await store.close();
    },
  };
}
