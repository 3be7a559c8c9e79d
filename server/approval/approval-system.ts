import { join } from 'node:path';
import { parseDuration } from '../config/duration.js';
import type { Config } from '../config/schema.js';
import { createApprovalService, type ApprovalService } from './approval-service.js';
import { createGrantGate, type GrantGate } from './grant-gate.js';
import { createHeldRequests, type HeldExchange, type HeldRequests, type HeldRequestsOptions } from './held-requests.js';
import type { ReviewStore } from './review-store.js';
import { createSessionNotices, type SessionNotices } from './session-notices.js';
import { openSqliteReviewStore } from './sqlite-review-store.js';
import { createWebhookNotifier, type WebhookLog, type WebhookNotifier } from './webhook-notifier.js';

/** Options of {@link createApprovalSystem}. */
export interface ApprovalSystemOptions<X extends HeldExchange = HeldExchange> {
  /** The current configuration (read per use, so a reload takes effect). */
  readonly config: () => Config;
  /** Default: SQLite at `file`. */
  readonly store?: ReviewStore;
  /** The SQLite file of the default store; default `<storage.dir>/reviews.db` (`:memory:` keeps nothing). */
  readonly file?: string;
  /** Records review events into the held exchange's session (fail-closed). */
  readonly record?: HeldRequestsOptions<X>['record'];
  readonly log?: WebhookLog;
  readonly clock?: () => number;
}

/** Reviews, grants and their notifications, wired together once per gateway. */
export interface ApprovalSystem<X extends HeldExchange = HeldExchange> {
  readonly store: ReviewStore;
  readonly service: ApprovalService;
  readonly held: HeldRequests<X>;
  readonly grants: GrantGate;
  readonly notices: SessionNotices;
  readonly webhooks: WebhookNotifier;
  /** Withdraws held requests, stops webhook retries, closes the store. */
  close(): Promise<void>;
}

/** The review database's file for a storage directory. */
export function reviewsDbFile(storageDir: string): string {
  return join(storageDir, 'reviews.db');
}

/** Creates the approval system of one gateway process. */
export function createApprovalSystem<X extends HeldExchange = HeldExchange>(options: ApprovalSystemOptions<X>): ApprovalSystem<X> {
  const { config } = options;
  const store = options.store ?? openSqliteReviewStore({ file: options.file ?? reviewsDbFile(config().storage.dir) });
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
      await store.close();
    },
  };
}
