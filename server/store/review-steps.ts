import type { ReviewEvent } from '../approval/review-feed.js';
import { isGrantSummary, resendDeadline, type Grant, type Review, type ReviewApproval, type ReviewPerson } from '../approval/review.js';
import { alreadyApproved, reviewDecided, reviewExpired } from './review-errors.js';
import { grantOnApproval } from './store-rows.js';
import type { ApprovalOutcome, ResendClaim, ReviewResolution } from './store.js';

/**
 * What a decision does to a review, decided here once for every backend: each reads the review in its
 * own transaction (SQLite under the write lock, Postgres with the row locked), asks one of these, and
 * writes what it is told in that transaction; so the backends cannot drift apart on the rules.
 */

/**
 * What one approval does: the review as it must be written, the event that announces it, and the grant
 * to insert with it. Without an event the review was no longer pending, and nothing is written.
 */
export interface ApprovalStep {
  readonly review: Review;
  readonly event?: ReviewEvent;
  readonly grant?: Grant;
}

/** Throws ERR_REVIEW_CONFLICT (inside the transaction, so nothing is written) when this reviewer already approved. */
export function approvalStep(review: Review, approval: ReviewApproval): ApprovalStep {
  if (review.status === 'pending' && review.expiresAt <= approval.at) {
    // Written although the approval fails: the deadline has passed whoever notices it first.
    const expired: Review = { ...review, status: 'expired', resolvedAt: approval.at };
    return { review: expired, event: { type: 'review.expired', review: expired, at: approval.at } };
  }
  if (review.status !== 'pending') return { review };
  if (review.approvals.some((a) => a.sub === approval.sub)) throw alreadyApproved(review);
  const approvals = [...review.approvals, approval];
  const actor: ReviewPerson = { sub: approval.sub, email: approval.email };
  if (approvals.length < review.minApprovals) {
    const partial: Review = { ...review, approvals };
    return { review: partial, event: { type: 'review.approval', review: partial, actor, at: approval.at } };
  }
  const approved: Review = { ...review, approvals, status: 'approved', resolvedAt: approval.at, resolvedBy: actor, resolution: approval.reason };
  const event: ReviewEvent = { type: 'review.approved', review: approved, actor, at: approval.at };
  if (review.kind !== 'grant' || !isGrantSummary(review.summary)) return { review: approved, event };
  return { review: approved, event, grant: grantOnApproval(review, approvals, review.summary.durationMs, approval.at) };
}

/** What `Store.approveReview` resolves to once the step is committed (and announced), or the error it throws. */
export function approvalOutcome(step: ApprovalStep): ApprovalOutcome {
  if (step.event === undefined) throw reviewDecided(step.review);
  if (step.event.type === 'review.expired') throw reviewExpired(step.review.id);
  return step.grant === undefined ? { review: step.review } : { review: step.review, grant: step.grant };
}

/** The review a resolution ends, and the event announcing it; undefined when the review is unknown or no longer pending. */
export function resolutionStep(review: Review | undefined, resolution: ReviewResolution): { review: Review; event: ReviewEvent } | undefined {
  if (review === undefined || review.status !== 'pending') return undefined;
  const resolved: Review = { ...review, status: resolution.status, resolvedAt: resolution.at, resolvedBy: resolution.by, resolution: resolution.reason };
  return { review: resolved, event: { type: `review.${resolution.status}`, review: resolved, actor: resolution.by, at: resolution.at } };
}

/** The review with the re-send claimed; undefined when `claim` may not use it (see `Store.claimResend`). */
export function resendStep(review: Review | undefined, claim: ResendClaim): Review | undefined {
  if (review === undefined || review.resent !== undefined || review.requester.sub !== claim.requester) return undefined;
  const deadline = resendDeadline(review);
  if (deadline === undefined || deadline <= claim.at || review.resend?.binding !== claim.binding) return undefined;
  return { ...review, resent: { at: claim.at, requestId: claim.requestId, sessionId: claim.sessionId } };
}
