import { SluiceError } from '../../shared/errors.js';
import { MAX_TIMER_MS } from '../../shared/timers.js';
import type { Principal } from '../identity/principal.js';
import type { ApprovalService, RequestReviewInput } from './approval-service.js';
import type { ReviewEvent } from './review-feed.js';
import { formatDuration } from './review-json.js';
import { resendDeadline, type RequestSummary, type Review } from './review.js';

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
  /** How long after approval a request answered at once may be sent again (`approval.resend_window`). */
  readonly resendWindowMs?: () => number;
  /**
   * This replica's id, named by the reviews of the requests it holds: if it dies, another replica abandons
   * them (replica-sweeps.ts), since their callers were connected to it.
   */
  readonly replica?: string;
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

/** A request answered at once: its review outlives the caller's connection. */
export interface DeferInput<X extends HeldExchange = HeldExchange> {
  readonly exchange: X;
  readonly decision: HoldDecision;
  readonly summary: RequestSummary;
  /** The request's binding (request-binding.ts): what a re-send must match. */
  readonly binding: string;
}

/** Holds exchanges until their review is decided. */
export interface HeldRequests<X extends HeldExchange = HeldExchange> {
  /** Resolves with the approved review; rejects with ERR_REVIEW_REJECTED, ERR_REVIEW_EXPIRED, ERR_REVIEW_ABANDONED or ERR_REVIEW_LIMIT. */
  hold(input: HoldInput<X>): Promise<Review>;
  /**
   * Opens the review of a request whose caller is answered at once (or finds the pending one of the same
   * request, so asking again does not ask reviewers twice) and records it in the exchange's session. The
   * requester's tunnel hears of the decision; the deadline is kept on this replica. ERR_REVIEW_LIMIT as `hold`.
   */
  defer(input: DeferInput<X>): Promise<Review>;
  /** Whether the exchange's requester has an approved request under `rule` that may still be sent again. */
  awaitsResend(exchange: X, rule: string): Promise<boolean>;
  /**
   * Uses an approval for this exchange when it is the approved request sent again (same binding, same
   * requester, within the window, first use) and records it in the exchange's session; undefined otherwise.
   */
  claimResend(exchange: X, rule: string, binding: string): Promise<Review | undefined>;
  /** Exchanges held on this replica now. */
  readonly size: number;
  /**
   * Withdraws every held exchange (shutdown): their reviews are marked abandoned, their callers get
   * ERR_SHUTTING_DOWN. Reviews of requests answered at once stay pending: their callers are not waiting.
   */
  close(): Promise<void>;
}

/** First wait before a deadline whose expiry failed (the store unreachable) is tried again; doubles each time. */
const EXPIRE_RETRY_FIRST_MS = 500;
/** The longest wait between tries: the review is expired soon after the store is back. */
const EXPIRE_RETRY_MAX_MS = 60_000;

function retryDelay(retry: number): number {
  return Math.min(EXPIRE_RETRY_FIRST_MS * 2 ** retry, EXPIRE_RETRY_MAX_MS);
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
  const resendWindowMs = options.resendWindowMs ?? (() => 10 * 60_000);
  /** The review a held or answered-at-once request opens. */
  const reviewRequest = ({ exchange, decision, summary }: HoldInput<X> | DeferInput<X>): RequestReviewInput => ({
    principal: exchange.principal,
    connection: exchange.connection.name,
    rule: decision.rule,
    reviewers: decision.reviewers,
    minApprovals: decision.minApprovals ?? 1,
    timeoutMs: decision.timeoutMs ?? options.defaultTimeoutMs(),
    summary,
    reason: exchange.session.reason,
    note: decision.note,
    sessionId: exchange.session.id,
    requestId: exchange.id,
  });
  const held = new Map<string, () => Promise<void>>();
  /** Reviews of requests answered at once on this replica: the session to tell, the deadline to keep. */
  const deferred = new Map<string, { readonly sessionId: string; timer?: NodeJS.Timeout }>();
  let stopWatchingDeferred: (() => void) | undefined;
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
    const review = await service.openRequestReview({ ...reviewRequest(input), ...(options.replica === undefined ? {} : { replica: options.replica }) });
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
        const now = await service.store.getReview(id);
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

  function untrack(id: string): void {
    const entry = deferred.get(id);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    deferred.delete(id);
    if (deferred.size === 0) {
      stopWatchingDeferred?.();
      stopWatchingDeferred = undefined;
    }
  }

  /**
   * Ends the tracking of a decided review and tells the requester's tunnel how it ended. Called from the feed
   * and from the deadline, whichever hears first; the second finds nothing tracked and says nothing.
   */
  function ended(r: Review): void {
    const tracked = deferred.get(r.id);
    if (tracked === undefined || r.status === 'pending') return;
    untrack(r.id);
    if (r.status === 'approved') {
      const until = resendDeadline(r);
      notice(tracked.sessionId, {
        level: 'info',
        code: 'review.approved',
        message: `${r.id} approved by ${who(r.resolvedBy)}; send the same request again${until === undefined ? '' : ` before ${new Date(until).toISOString()}`} and it is forwarded`,
      });
    } else {
      const refusal = refusalOf(r);
      notice(tracked.sessionId, { level: 'warn', code: refusal.code, message: refusal.message });
    }
  }

  /** Tells the requester's tunnel how a review of a request answered at once ends, and expires it on time. */
  function track(review: Review): void {
    if (deferred.has(review.id) || review.sessionId === undefined) return;
    const entry: { sessionId: string; timer?: NodeJS.Timeout } = { sessionId: review.sessionId };
    deferred.set(review.id, entry);
    stopWatchingDeferred ??= service.store.feed.subscribe((event) => {
      const tracked = deferred.get(event.review.id);
      if (tracked === undefined) return;
      const r = event.review;
      if (r.status === 'pending') {
        if (event.type === 'review.approval') notice(tracked.sessionId, { level: 'info', code: 'review.approval', message: `${r.id}: approved by ${who(event.actor)} (${r.approvals.length} of ${r.minApprovals} approvals)` });
        return;
      }
      ended(r);
    });
    const arm = (delayMs: number, retry: number): void => {
      if (!deferred.has(review.id)) return;
      entry.timer = setTimeout(() => {
        if (!deferred.has(review.id)) return;
        if (review.expiresAt - clock() > 0) return arm(review.expiresAt - clock(), 0);
        // The deadline does not wait for the feed: a review decided on another replica, or whose announcement
        // was lost, leaves `expire` nothing to change and no event here, so the store says how it ended.
        service
          .expire(review.id)
          .then(async (expired) => expired ?? (await service.store.getReview(review.id)))
          .then((now) => {
            if (now === undefined) untrack(review.id);
            else if (now.status === 'pending') arm(retryDelay(retry), retry + 1);
            else ended(now);
          })
          // An unreachable store must not leave the review pending with nobody to expire it.
          .catch(() => arm(retryDelay(retry), retry + 1));
      }, Math.min(Math.max(delayMs, 0), MAX_TIMER_MS));
      // Nobody waits on this timer: it must not keep a stopping gateway alive.
      entry.timer.unref();
    };
    arm(review.expiresAt - clock(), 0);
  }

  async function defer(input: DeferInput<X>): Promise<Review> {
    const { exchange, decision } = input;
    const lookup = { principal: exchange.principal, connection: exchange.connection.name, rule: decision.rule };
    const existing = await service.pendingAnsweredAtOnce(lookup, input.binding);
    const review =
      existing ??
      (await service.openRequestReview({ ...reviewRequest(input), resend: { binding: input.binding, windowMs: resendWindowMs() } }));
    try {
      await options.record?.(exchange, { type: 'review.created', review, at: clock() });
    } catch (err) {
      // A review nobody's recording mentions must not be approved: withdraw the one made for this exchange.
      if (existing === undefined) await service.abandon(review.id, 'the recording failed').catch(() => undefined);
      throw err;
    }
    track(review);
    notice(exchange.session.id, {
      level: 'info',
      code: 'review.waiting',
      message:
        `waiting for approval ${review.id} (reviewers: ${review.reviewers.join(', ')}) — ${exchange.principal.email ?? exchange.principal.sub}'s request matched policy "${review.rule}"; ` +
        'answered at once (Prefer: respond-async): send the same request again once it is approved',
    });
    return review;
  }

  async function claimResend(exchange: X, rule: string, binding: string): Promise<Review | undefined> {
    const lookup = { principal: exchange.principal, connection: exchange.connection.name, rule };
    for (const candidate of await service.resendable(lookup)) {
      if (candidate.resend?.binding !== binding) continue;
      const claimed = await service.claimResend(candidate.id, {
        requester: exchange.principal.sub,
        binding,
        at: clock(),
        requestId: exchange.id,
        sessionId: exchange.session.id,
      });
      if (claimed === undefined) continue;
      // Recorded before anything is forwarded (fail-closed); the approval is spent either way.
      await options.record?.(exchange, { type: 'review.approved', review: claimed, actor: claimed.resolvedBy, at: clock() });
      notice(exchange.session.id, {
        level: 'info',
        code: 'review.approved',
        message: `${claimed.id}: the request approved by ${who(claimed.resolvedBy)} was sent again; forwarding it`,
      });
      return claimed;
    }
    return undefined;
  }

  return {
    hold,
    defer,
    async awaitsResend(exchange, rule) {
      return (await service.resendable({ principal: exchange.principal, connection: exchange.connection.name, rule })).length > 0;
    },
    claimResend,
    get size() {
      return held.size;
    },
    async close() {
      for (const id of [...deferred.keys()]) untrack(id);
      await Promise.all([...held.values()].map((withdraw) => withdraw()));
    },
  };
}
