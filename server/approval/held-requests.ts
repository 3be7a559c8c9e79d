import { SluiceError } from '../../shared/errors.js';
import { MAX_TIMER_MS } from '../../shared/timers.js';
import type { Principal } from '../identity/principal.js';
import type { ApprovalService } from './approval-service.js';
import type { ReviewEvent } from './review-feed.js';
import { formatDuration } from './review-json.js';
import type { RequestSummary, Review } from './review.js';

/** The exchange being held, as far as reviews care. */
export interface HeldExchange {
  readonly id: string;
  readonly principal: Principal;
  readonly connection: { readonly name: string };
  readonly session: { readonly id: string; readonly reason?: string };
}

/** The policy decision that holds it. */
export interface HoldDecision {
  readonly rule: string;
  readonly reviewers: readonly string[];
  readonly timeoutMs?: number;
  readonly minApprovals?: number;
  readonly note?: string;
}

/** A message for the requester's `sluice connect`. */
export interface SessionNotice {
  readonly level: 'info' | 'warn';
  readonly message: string;
  readonly code?: string;
}

/** Options of {@link createHeldRequests}. */
export interface HeldRequestsOptions<X extends HeldExchange = HeldExchange> {
  readonly service: ApprovalService;
  /** Hold time when the decision names none. */
  readonly defaultTimeoutMs: () => number;
  /** Tells the requester's tunnel (if the session is one on this replica); never throws. */
  readonly notifySession?: (sessionId: string, notice: SessionNotice) => void;
  /**
   * Records a review event in the exchange's session. Awaited: when it fails, the held request is
   * refused (recording is fail-closed), never forwarded.
   */
  readonly record?: (exchange: X, event: ReviewEvent) => Promise<void>;
  readonly clock?: () => number;
}

/** One hold of an exchange. */
export interface HoldInput<X extends HeldExchange = HeldExchange> {
  readonly exchange: X;
  readonly decision: HoldDecision;
  readonly summary: RequestSummary;
  /** Aborts when the caller goes away: the review is then marked abandoned. */
  readonly signal?: AbortSignal;
}

/** Holds exchanges until their review is decided. */
export interface HeldRequests<X extends HeldExchange = HeldExchange> {
  /** Resolves with the approved review; rejects with ERR_REVIEW_REJECTED, ERR_REVIEW_EXPIRED, ERR_REVIEW_ABANDONED or ERR_REVIEW_LIMIT. */
  hold(input: HoldInput<X>): Promise<Review>;
  /** Exchanges held on this replica now. */
  readonly size: number;
  /** Withdraws every held exchange (shutdown): their reviews are marked abandoned, their callers get ERR_SHUTTING_DOWN. */
  close(): Promise<void>;
}

function who(p: { sub: string; email?: string } | undefined): string {
  return p === undefined ? 'a reviewer' : (p.email ?? p.sub);
}

/** The error a held caller gets when its review ends other than approved. */
export function refusalOf(review: Review): SluiceError {
  const details = { review: review.id, rule: review.rule, connection: review.connection };
  switch (review.status) {
    case 'rejected':
      return new SluiceError('ERR_REVIEW_REJECTED', {
        message: `Review ${review.id} was rejected by ${who(review.resolvedBy)}${review.resolution ? `: ${review.resolution}` : ''}`,
        details: { ...details, reviewer: review.resolvedBy?.email ?? review.resolvedBy?.sub ?? null, reason: review.resolution ?? null },
      });
    case 'expired':
      return new SluiceError('ERR_REVIEW_EXPIRED', {
        message: `review expired: ${review.id} was not approved within ${formatDuration(review.expiresAt - review.createdAt)}`,
        details,
      });
    default:
      return new SluiceError('ERR_REVIEW_ABANDONED', { message: `Review ${review.id} was withdrawn (${review.resolution ?? review.status})`, details });
  }
}

/** Creates the holder of exchanges waiting for review on this replica. */
export function createHeldRequests<X extends HeldExchange = HeldExchange>(options: HeldRequestsOptions<X>): HeldRequests<X> {
  const { service } = options;
  const clock = options.clock ?? Date.now;
  const held = new Map<string, () => Promise<void>>();
  const notice = (sessionId: string, n: SessionNotice): void => {
    try {
      options.notifySession?.(sessionId, n);
    } catch {
      // A notice is a courtesy; the hold goes on.
    }
  };

  async function hold(input: HoldInput<X>): Promise<Review> {
    const { exchange, decision, signal } = input;
    if (signal?.aborted) throw new SluiceError('ERR_REVIEW_ABANDONED', { message: 'The caller left before the request was held' });
    const review = await service.openRequestReview({
      principal: exchange.principal,
      connection: exchange.connection.name,
      rule: decision.rule,
      reviewers: decision.reviewers,
      minApprovals: decision.minApprovals ?? 1,
      timeoutMs: decision.timeoutMs ?? options.defaultTimeoutMs(),
      summary: input.summary,
      reason: exchange.session.reason,
      note: decision.note,
      sessionId: exchange.session.id,
      requestId: exchange.id,
    });
    try {
      await options.record?.(exchange, { type: 'review.created', review, at: review.createdAt });
    } catch (err) {
      await service.abandon(review.id, 'the recording failed').catch(() => undefined);
      throw err;
    }
    notice(exchange.session.id, {
      level: 'info',
      code: 'review.waiting',
      message: `waiting for approval ${review.id} (reviewers: ${review.reviewers.join(', ')}) — ${exchange.principal.email ?? exchange.principal.sub}'s request matched policy "${review.rule}"`,
    });
    return wait(input, review);
  }

  function wait(input: HoldInput<X>, created: Review): Promise<Review> {
    const { exchange, signal } = input;
    const id = created.id;
    return new Promise<Review>((resolve, reject) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let chain = Promise.resolve();
      const seen = new Set<string>();

      const cleanup = (): void => {
        done = true;
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        held.delete(id);
      };
      const fail = (err: unknown): void => {
        if (done) return;
        cleanup();
        reject(err);
      };
      // Events are recorded in order, one at a time; the first terminal one settles the hold.
      const onEvent = (event: ReviewEvent): void => {
        const key = `${event.type}:${event.review.approvals.length}`;
        if (done || seen.has(key)) return;
        seen.add(key);
        chain = chain.then(async () => {
          if (done) return;
          try {
            await options.record?.(exchange, event);
          } catch (err) {
            if (event.review.status === 'pending') await service.abandon(id, 'the recording failed').catch(() => undefined);
            fail(err);
            return;
          }
          const review = event.review;
          if (review.status === 'pending') {
            notice(exchange.session.id, { level: 'info', code: 'review.approval', message: `${id}: approved by ${who(event.actor)} (${review.approvals.length} of ${review.minApprovals} approvals)` });
            return;
          }
          cleanup();
          if (review.status === 'approved') {
            notice(exchange.session.id, { level: 'info', code: 'review.approved', message: `${id} approved by ${who(review.resolvedBy)}; forwarding the request` });
            resolve(review);
          } else {
            const refusal = refusalOf(review);
            notice(exchange.session.id, { level: 'warn', code: refusal.code, message: refusal.message });
            reject(refusal);
          }
        });
      };
      const unsubscribe = service.store.feed.subscribe((event) => {
        if (event.review.id === id) onEvent(event);
      });
      const reconcile = async (): Promise<void> => {
        // Catches a decision announced before we subscribed, or one whose announcement was lost.
        const now = await service.store.get(id);
        if (now !== undefined && now.status !== 'pending') onEvent({ type: `review.${now.status}`, review: now, actor: now.resolvedBy, at: now.resolvedAt ?? clock() });
      };
      const onAbort = (): void => {
        if (done) return;
        service
          .abandon(id, 'the caller left')
          .then(() => reconcile())
          .catch(fail);
      };
      const arm = (): void => {
        const left = created.expiresAt - clock();
        timer = setTimeout(
          () => {
            if (done) return;
            if (created.expiresAt - clock() > 0) return arm();
            service
              .expire(id)
              .then(() => reconcile())
              .catch(fail);
          },
          Math.min(Math.max(left, 0), MAX_TIMER_MS),
        );
      };
      held.set(id, async () => {
        if (done) return;
        await service.abandon(id, 'the gateway shut down').catch(() => undefined);
        fail(new SluiceError('ERR_SHUTTING_DOWN', { message: `The gateway shut down while ${id} was waiting for review` }));
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      // The caller may have left while the review was being created.
      if (signal?.aborted) onAbort();
      arm();
      reconcile().catch(fail);
    });
  }

  return {
    hold,
    get size() {
      return held.size;
    },
    async close() {
      await Promise.all([...held.values()].map((withdraw) => withdraw()));
    },
  };
}
