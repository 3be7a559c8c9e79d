import { SluiceError } from '../../shared/errors.js';
import type { Review } from '../approval/review.js';

/**
 * The errors the review methods of a `Store` throw. Every backend throws these, word for word, so a
 * caller (and the conformance suite) never depends on which backend answered.
 */

/** ERR_NOT_FOUND for a review; also what a caller who may not see the review gets, so it learns nothing. */
export function reviewNotFound(id: string): SluiceError {
  return new SluiceError('ERR_NOT_FOUND', { message: `No review is named "${id}"`, details: { review: id } });
}

/** ERR_REVIEW_EXPIRED: the review's deadline passed before a decision. */
export function reviewExpired(id: string): SluiceError {
  return new SluiceError('ERR_REVIEW_EXPIRED', { message: `Review ${id} expired before it was decided`, details: { review: id } });
}

/** ERR_REVIEW_EXPIRED or ERR_REVIEW_CONFLICT for a decision on a review that is no longer pending. */
export function reviewDecided(review: Review): SluiceError {
  if (review.status === 'expired') return reviewExpired(review.id);
  const by = review.resolvedBy?.email ?? review.resolvedBy?.sub;
  return new SluiceError('ERR_REVIEW_CONFLICT', {
    message: `Review ${review.id} is already ${review.status}${by ? ` (by ${by})` : ''}`,
    details: { review: review.id, status: review.status },
  });
}

/** ERR_REVIEW_CONFLICT: approvals count distinct reviewers. */
export function alreadyApproved(review: Review): SluiceError {
  return new SluiceError('ERR_REVIEW_CONFLICT', {
    message: `You already approved ${review.id}; it needs ${review.minApprovals} distinct reviewers (${review.approvals.length} so far)`,
    details: { review: review.id },
  });
}

/** ERR_REVIEW_LIMIT: `held` pending reviews already, of the requester (`user`) or of the gateway. */
export function reviewLimit(scope: 'user' | 'gateway', held: number, limit: number): SluiceError {
  const message =
    scope === 'user'
      ? `You already have ${held} request${held === 1 ? '' : 's'} waiting for review (the limit is ${limit}); wait for a decision`
      : `The gateway already holds ${held} requests waiting for review (the limit is ${limit}); try again later`;
  return new SluiceError('ERR_REVIEW_LIMIT', { message, details: { limit, scope } });
}
