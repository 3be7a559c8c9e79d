import { parseDuration } from '../config/duration.js';
import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import { createApprovalService, type ApprovalService } from './approval-service.js';
import { createGrantGate, type GrantGate } from './grant-gate.js';
import { createHeldRequests, type HeldExchange, type HeldRequests, type HeldRequestsOptions } from './held-requests.js';
import { createSessionNotices, type SessionNotices } from './session-notices.js';
import type { ReviewEvent } from './review-feed.js';
import { createWebhookNotifier, type WebhookLog, type WebhookNotifier } from './webhook-notifier.js';

/** Options of {@link createApprovalSystem}. */
export interface ApprovalSystemOptions<X extends HeldExchange = HeldExchange> {
  /** The current configuration (read per use, so a reload takes effect). */
  readonly config: () => Config;
  /**
   * Where reviews and grants are kept: the gateway's index (shared by every replica); its owner closes it.
   * Required, so that no caller gets a private in-memory store by omission: reviews kept there are seen by
   * no other replica and lost at a restart.
   */
  readonly store: Store;
  /** Records review events into the held exchange's session (fail-closed). */
  readonly record?: HeldRequestsOptions<X>['record'];
  readonly log?: WebhookLog;
  /** This replica's id: reviews of the requests it holds name it (see HeldRequestsOptions.replica). */
  readonly replica?: string;
  readonly clock?: () => number;
  /** Told every review change this replica makes, as webhooks are (the audit events' source). */
  readonly onReviewEvent?: (event: ReviewEvent) => void;
}

/** Reviews, grants and their notifications, wired together once per gateway. */
export interface ApprovalSystem<X extends HeldExchange = HeldExchange> {
  readonly store: Store;
  readonly service: ApprovalService;
  readonly held: HeldRequests<X>;
  readonly grants: GrantGate;
  readonly notices: SessionNotices;
  readonly webhooks: WebhookNotifier;
  /** Tells a review change made outside the approval service (a grant revoked) to webhooks and `onReviewEvent`. */
  notify(event: ReviewEvent): void;
  /** Withdraws held requests and stops webhook retries; the store stays open (its owner closes it). */
  close(): Promise<void>;
}

/** Creates the approval system of one gateway process. */
export function createApprovalSystem<X extends HeldExchange = HeldExchange>(options: ApprovalSystemOptions<X>): ApprovalSystem<X> {
  const { config, store } = options;
  const webhooks = createWebhookNotifier({ webhooks: () => config().approval.webhooks, log: options.log });
  const notify = (event: ReviewEvent): void => {
    webhooks.notify(event);
    options.onReviewEvent?.(event);
  };
  const service = createApprovalService({
    store,
    limits: () => ({ perUser: config().approval.max_held_per_user, total: config().approval.max_held_total }),
    notify,
    clock: options.clock,
  });
  const notices = createSessionNotices();
  const held = createHeldRequests<X>({
    service,
    defaultTimeoutMs: () => parseDuration(config().approval.default_timeout),
    notifySession: (id, notice) => notices.notify(id, notice),
    record: options.record,
    resendWindowMs: () => parseDuration(config().approval.resend_window),
    replica: options.replica,
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
    notify,
    async close() {
      await held.close();
      await webhooks.close();
    },
  };
}
