import type { ReviewFeed } from './review-feed.js';
import type { Grant, NewReview, Review, ReviewApproval, ReviewKind, ReviewPerson, ReviewStatus, ResendUse } from './review.js';

/** Bounds on pending reviews, checked atomically with the insert. */
export interface ReviewLimits {
  /** Pending reviews one requester may have. */
  readonly perUser: number;
  /** Pending reviews in total. */
  readonly total: number;
}

/** Which reviews to list; newest first. */
export interface ReviewFilter {
  readonly status?: ReviewStatus;
  readonly kind?: ReviewKind;
  readonly requester?: string;
  readonly connection?: string;
  /** Only reviews of requests answered at once with this binding. */
  readonly binding?: string;
  /** Default 100. */
  readonly limit?: number;
}

/** A re-send claiming the approval of a request answered at once. */
export interface ResendClaim extends ResendUse {
  /** The requester's `sub`: only the requester may use the approval. */
  readonly requester: string;
  /** The re-sent request's binding: it must equal the approved one's. */
  readonly binding: string;
}

/** Which grants to list; newest first. */
export interface GrantFilter {
  readonly sub?: string;
  readonly connection?: string;
  /** Only grants that have not ended at this time. */
  readonly activeAt?: number;
  /** Default 100. */
  readonly limit?: number;
}

/** How a pending review ends other than by approval. */
export interface ReviewResolution {
  readonly status: 'rejected' | 'expired' | 'abandoned';
  readonly at: number;
  readonly by?: ReviewPerson;
  readonly reason?: string;
}

/** What an approval did: the review after it, and the grant it created (grant reviews that became approved). */
export interface ApprovalOutcome {
  readonly review: Review;
  readonly grant?: Grant;
}

/**
 * Reviews and grants, shared by every replica. Methods are asynchronous so a networked backend
 * (Postgres) fits the same contract; each state change is atomic and is published on `feed` after it
 * commits. Times are milliseconds since the epoch.
 */
export interface ReviewStore {
  readonly feed: ReviewFeed;
  /** Inserts a pending review, or throws ERR_REVIEW_LIMIT when the requester or the gateway is at its limit. */
  create(review: NewReview, limits: ReviewLimits): Promise<Review>;
  get(id: string): Promise<Review | undefined>;
  list(filter?: ReviewFilter): Promise<Review[]>;
  /**
   * Adds one reviewer's approval to a pending review. The approval that reaches `minApprovals` distinct
   * reviewers approves it and, for an access request, creates its grant. Throws ERR_NOT_FOUND,
   * ERR_REVIEW_EXPIRED (and marks it expired) past `expiresAt`, ERR_REVIEW_CONFLICT when it is no longer
   * pending or this reviewer already approved.
   */
  approve(id: string, approval: ReviewApproval): Promise<ApprovalOutcome>;
  /** Ends a pending review; undefined when it was not pending any more (someone else decided first). */
  resolve(id: string, resolution: ReviewResolution): Promise<Review | undefined>;
  /**
   * Marks an approved review's request as sent again, atomically and once: undefined unless the review
   * is approved, was answered at once, belongs to `claim.requester`, has `claim.binding`, was approved
   * no longer than its window before `claim.at`, and was not re-sent before.
   */
  claimResend(id: string, claim: ResendClaim): Promise<Review | undefined>;
  listGrants(filter?: GrantFilter): Promise<Grant[]>;
  /** The grant of `sub` on `connection` that lasts longest beyond `at`, if any. */
  activeGrant(sub: string, connection: string, at: number): Promise<Grant | undefined>;
  close(): Promise<void>;
}
