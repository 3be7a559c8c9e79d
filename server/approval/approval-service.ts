import { SluiceError } from '../../shared/errors.js';
import { MAX_TIMER_MS } from '../../shared/timers.js';
import { hasRole, inAnyGroup, type Principal } from '../identity/principal.js';
import { reviewDecided, reviewNotFound } from '../store/review-errors.js';
import type { ApprovalOutcome, ResendClaim, ReviewFilter, ReviewLimits, Store } from '../store/store.js';
import type { ReviewEvent } from './review-feed.js';
import { newReviewId, resendDeadline, type GrantSummary, type RequestSummary, type ResendTerms, type Review, type ReviewPerson } from './review.js';

/** Told of every review change this replica makes (webhooks); must not throw or block. */
export type ReviewNotify = (event: ReviewEvent) => void;

/** Options of {@link createApprovalService}. */
export interface ApprovalServiceOptions {
  readonly store: Store;
  /** Read per review, so a reload takes effect. */
  readonly limits: () => ReviewLimits;
  /** Webhooks; called once per change, on the replica that made it. */
  readonly notify?: ReviewNotify;
  /** Milliseconds since the epoch; tests may pin it. */
  readonly clock?: () => number;
}

/** A held request to be reviewed. */
export interface RequestReviewInput {
  readonly principal: Principal;
  readonly connection: string;
  readonly rule: string;
  readonly reviewers: readonly string[];
  readonly minApprovals: number;
  readonly timeoutMs: number;
  readonly summary: RequestSummary;
  readonly reason?: string;
  readonly note?: string;
  readonly sessionId: string;
  readonly requestId: string;
  /** Set when the caller is answered at once instead of held: what its re-send must match. */
  readonly resend?: ResendTerms;
  /** The replica holding the caller, for a held request (see `NewReview.replica`). */
  readonly replica?: string;
}

/** Where the requester's own requests are looked up: the request answered at once, or its approval. */
export interface RequestLookup {
  readonly principal: Principal;
  readonly connection: string;
  readonly rule: string;
}

/** An access request for a connection. */
export interface GrantRequestInput {
  readonly principal: Principal;
  readonly connection: string;
  readonly durationMs: number;
  readonly reason?: string;
  readonly reviewers: readonly string[];
  readonly minApprovals: number;
  readonly timeoutMs: number;
}

/** A reviewer's decision on a review. */
export interface ReviewDecisionInput {
  readonly id: string;
  readonly principal: Principal;
  readonly reason?: string;
}

/** The rules of reviewing: who may see and decide what, on top of the store's atomic state changes. */
export interface ApprovalService {
  readonly store: Store;
  openRequestReview(input: RequestReviewInput): Promise<Review>;
  requestGrant(input: GrantRequestInput): Promise<Review>;
  /** Requesters never approve their own; only members of the reviewer groups; distinct reviewers count. */
  approve(input: ReviewDecisionInput): Promise<ApprovalOutcome>;
  reject(input: ReviewDecisionInput): Promise<Review>;
  /** Marks a pending review expired; undefined when it was decided first. */
  expire(id: string): Promise<Review | undefined>;
  /** Marks a pending review abandoned (its caller left); undefined when it was decided first. */
  abandon(id: string, reason: string): Promise<Review | undefined>;
  /** A review the principal may see, or ERR_NOT_FOUND (never revealing that it exists). */
  get(principal: Principal, id: string): Promise<Review>;
  /** Reviews the principal may see. */
  list(principal: Principal, filter?: ReviewFilter): Promise<Review[]>;
  /**
   * Resolves with the review once it is decided, or as it stands after `waitMs` (or when `signal`
   * aborts); a pending review past its deadline is marked expired first. ERR_NOT_FOUND as `get`.
   */
  awaitDecision(principal: Principal, id: string, waitMs: number, signal?: AbortSignal): Promise<Review>;
  /** The requester's approved requests, answered at once under `rule`, that may still be sent again. */
  resendable(lookup: RequestLookup): Promise<Review[]>;
  /** The requester's pending review of a request answered at once with this binding, if any. */
  pendingAnsweredAtOnce(lookup: RequestLookup, binding: string): Promise<Review | undefined>;
  /** Uses an approval for a re-send: once, by its requester, for the same request (see Store.claimResend). */
  claimResend(id: string, claim: ResendClaim): Promise<Review | undefined>;
  /** Whether the principal may see the review: its requester, its reviewers, admins and auditors. */
  canSee(principal: Principal, review: Review): boolean;
}

function person(p: Principal): ReviewPerson {
  return { sub: p.sub, email: p.email, groups: p.groups };
}

/** Creates the approval service over a store. */
export function createApprovalService(options: ApprovalServiceOptions): ApprovalService {
  const { store } = options;
  const clock = options.clock ?? Date.now;
  const notify = (event: ReviewEvent): void => {
    try {
      options.notify?.(event);
    } catch {
      // Notifications never decide anything.
    }
  };

  const canSee = (principal: Principal, review: Review): boolean =>
    review.requester.sub === principal.sub || inAnyGroup(principal, review.reviewers) || hasRole(principal, 'admin', 'auditor');

  async function load(principal: Principal, id: string): Promise<Review> {
    const review = await store.getReview(id);
    if (review === undefined || !canSee(principal, review)) throw reviewNotFound(id);
    return review;
  }

  function mayDecide(principal: Principal, review: Review): void {
    if (review.requester.sub === principal.sub) {
      throw new SluiceError('ERR_SELF_APPROVAL', {
        message: `You cannot review ${review.id}: it is your own request`,
        details: { review: review.id },
      });
    }
    if (!inAnyGroup(principal, review.reviewers)) {
      throw new SluiceError('ERR_NOT_REVIEWER', {
        message: `Only members of ${review.reviewers.join(', ')} can review ${review.id}`,
        details: { review: review.id, reviewers: review.reviewers },
      });
    }
  }

  async function expire(id: string): Promise<Review | undefined> {
    const at = clock();
    const review = await store.resolveReview(id, { status: 'expired', at });
    if (review !== undefined) notify({ type: 'review.expired', review, at });
    return review;
  }

  /**
   * A decision on a pending review past its deadline: the review is marked expired, announced once (by
   * whoever marks it), and the decision refused as any decision on an expired review is.
   */
  async function refuseIfLate(review: Review, at: number): Promise<void> {
    if (review.status !== 'pending' || review.expiresAt > at) return;
    const expired = await expire(review.id);
    throw reviewDecided(expired ?? (await store.getReview(review.id)) ?? review);
  }

  async function create(review: Parameters<Store['createReview']>[0]): Promise<Review> {
    const created = await store.createReview(review, options.limits());
    notify({ type: 'review.created', review: created, at: created.createdAt });
    return created;
  }

  return {
    store,
    canSee,
    openRequestReview(input) {
      const now = clock();
      return create({
        id: newReviewId(),
        kind: 'request',
        requester: person(input.principal),
        connection: input.connection,
        rule: input.rule,
        reason: input.reason,
        note: input.note,
        summary: input.summary,
        reviewers: input.reviewers,
        minApprovals: input.minApprovals,
        createdAt: now,
        expiresAt: now + input.timeoutMs,
        sessionId: input.sessionId,
        requestId: input.requestId,
        ...(input.resend === undefined ? {} : { resend: input.resend }),
        ...(input.replica === undefined ? {} : { replica: input.replica }),
      });
    },
    requestGrant(input) {
      const now = clock();
      const summary: GrantSummary = { durationMs: input.durationMs };
      return create({
        id: newReviewId(),
        kind: 'grant',
        requester: person(input.principal),
        connection: input.connection,
        rule: 'grant',
        reason: input.reason,
        summary,
        reviewers: input.reviewers,
        minApprovals: input.minApprovals,
        createdAt: now,
        expiresAt: now + input.timeoutMs,
      });
    },
    async approve(input) {
      const review = await load(input.principal, input.id);
      mayDecide(input.principal, review);
      const at = clock();
      await refuseIfLate(review, at);
      // Past refuseIfLate, the store cannot be the one to expire it (same `at`, same deadline): a review
      // that is expired already throws ERR_REVIEW_EXPIRED without a second announcement.
      const outcome = await store.approveReview(input.id, { sub: input.principal.sub, email: input.principal.email, at, reason: input.reason });
      const actor = person(input.principal);
      const type = outcome.review.status === 'approved' ? 'review.approved' : 'review.approval';
      notify({ type, review: outcome.review, actor, at });
      return outcome;
    },
    async reject(input) {
      const review = await load(input.principal, input.id);
      mayDecide(input.principal, review);
      const at = clock();
      await refuseIfLate(review, at);
      const rejected = await store.resolveReview(input.id, { status: 'rejected', at, by: person(input.principal), reason: input.reason });
      if (rejected === undefined) throw reviewDecided((await store.getReview(input.id)) ?? review);
      notify({ type: 'review.rejected', review: rejected, actor: person(input.principal), at });
      return rejected;
    },
    expire,
    async abandon(id, reason) {
      const at = clock();
      const review = await store.resolveReview(id, { status: 'abandoned', at, reason });
      if (review !== undefined) notify({ type: 'review.abandoned', review, at });
      return review;
    },
    get: load,
    async list(principal, filter = {}) {
      // Filtering after the query keeps the store's interface small; `limit` is applied to what is visible.
      const limit = filter.limit ?? 100;
      const rows = await store.listReviews({ ...filter, limit: hasRole(principal, 'admin', 'auditor') ? limit : Math.max(limit * 5, 500) });
      return rows.filter((r) => canSee(principal, r)).slice(0, limit);
    },
    async awaitDecision(principal, id, waitMs, signal) {
      let review = await load(principal, id);
      // Nothing else may be watching a review whose caller was answered at once: its deadline is applied here too.
      if (review.status === 'pending' && review.expiresAt <= clock()) review = (await expire(id)) ?? (await store.getReview(id)) ?? review;
      if (review.status !== 'pending' || waitMs <= 0 || signal?.aborted === true) return review;
      const pending = review;
      return new Promise<Review>((resolve, reject) => {
        let done = false;
        const finish = (): void => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          unsubscribe();
          signal?.removeEventListener('abort', finish);
          store.getReview(id).then((now) => resolve(now ?? pending), reject);
        };
        const unsubscribe = store.feed.subscribe((event) => {
          if (event.review.id === id && event.review.status !== 'pending') finish();
        });
        const deadline = pending.expiresAt - clock();
        const timer = setTimeout(
          () => {
            if (deadline <= waitMs) expire(id).then(finish, finish);
            else finish();
          },
          Math.min(Math.max(Math.min(waitMs, deadline), 0), MAX_TIMER_MS),
        );
        signal?.addEventListener('abort', finish, { once: true });
        // A decision made between the first read and the subscription.
        store.getReview(id).then((now) => {
          if (now !== undefined && now.status !== 'pending') finish();
        }, finish);
      });
    },
    async resendable(lookup) {
      const at = clock();
      const rows = await store.listReviews({ requester: lookup.principal.sub, connection: lookup.connection, kind: 'request', status: 'approved', limit: 100 });
      return rows.filter((r) => r.rule === lookup.rule && r.resent === undefined && (resendDeadline(r) ?? 0) > at);
    },
    async pendingAnsweredAtOnce(lookup, binding) {
      const at = clock();
      const rows = await store.listReviews({ requester: lookup.principal.sub, connection: lookup.connection, kind: 'request', status: 'pending', binding, limit: 10 });
      return rows.find((r) => r.rule === lookup.rule && r.expiresAt > at);
    },
    claimResend(id, claim) {
      return store.claimResend(id, claim);
    },
  };
}
