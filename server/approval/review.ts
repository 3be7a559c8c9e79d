import type { SealedPreview } from './review-preview-seal.js';
import { randomUUID } from 'node:crypto';

/** `request`: one held call; `grant`: time-boxed access to a connection. */
export type ReviewKind = 'request' | 'grant';

/** A review is pending until exactly one of the other states ends it. */
export type ReviewStatus = 'pending' | 'approved' | 'rejected' | 'expired' | 'abandoned';

/** Who asked, as the gateway's verified token said. */
export interface ReviewPerson {
  readonly sub: string;
  readonly email?: string;
  readonly groups?: readonly string[];
}

/**
 * What reviewers are shown of a held request: never the body. `model` is the JSON body's `model` field
 * when it is a string; headers, query values and prompts are left out until the masking stage can summarize them.
 */
export interface RequestSummary {
  readonly method: string;
  readonly path: string;
  readonly model?: string;
  readonly size: number;
  /**
   * The body as the session's recording keeps it (masked by the connection's profiles), bounded and
   * pretty-printed: shown by `GET /v1/reviews/:id` only, never in lists, watch events or webhooks.
   */
  readonly preview?: SealedPreview;
}

/** What an access request asks for. */
export interface GrantSummary {
  readonly durationMs: number;
}

/** One approval of a review. */
export interface ReviewApproval {
  readonly sub: string;
  readonly email?: string;
  readonly at: number;
  readonly reason?: string;
}

/** A review as created; times are milliseconds since the epoch. */
export interface NewReview {
  readonly id: string;
  readonly kind: ReviewKind;
  readonly requester: ReviewPerson;
  readonly connection: string;
  /** The policy rule that asked for review, or `grant` for access requests. */
  readonly rule: string;
  /** The requester's reason (the session's `--reason`, or the access request's). */
  readonly reason?: string;
  /** The rule's message for reviewers. */
  readonly note?: string;
  readonly summary: RequestSummary | GrantSummary;
  readonly reviewers: readonly string[];
  readonly minApprovals: number;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly sessionId?: string;
  readonly requestId?: string;
  /** Set when the caller was answered at once (`Prefer: respond-async`) instead of held. */
  readonly resend?: ResendTerms;
  /**
   * The replica holding the caller while the review is pending: when it dies, the review is abandoned (the
   * caller went with it). Absent when no caller waits: access requests, requests answered at once.
   */
  readonly replica?: string;
}

/**
 * What an approval of a request answered at once allows: its requester may send the exact same request
 * again, once, within `windowMs` of the approval, and it is forwarded without a second hold.
 */
export interface ResendTerms {
  /** The request's binding (see request-binding.ts): requester, connection, rule, method, path, body. */
  readonly binding: string;
  readonly windowMs: number;
}

/** The re-send that used an approval: approvals of requests answered at once are single use. */
export interface ResendUse {
  readonly at: number;
  readonly requestId: string;
  readonly sessionId: string;
}

/** A stored review. */
export interface Review extends NewReview {
  readonly status: ReviewStatus;
  readonly approvals: readonly ReviewApproval[];
  readonly resolvedAt?: number;
  /** The reviewer who rejected it, or whose approval completed it. */
  readonly resolvedBy?: ReviewPerson;
  /** The rejecting reviewer's reason, or why it was abandoned. */
  readonly resolution?: string;
  /** Set once the approved request was sent again and forwarded. */
  readonly resent?: ResendUse;
}

/** Until when an approved review's request may be sent again; undefined when it may not be. */
export function resendDeadline(review: Review): number | undefined {
  if (review.resend === undefined || review.status !== 'approved' || review.resolvedAt === undefined) return undefined;
  return review.resolvedAt + review.resend.windowMs;
}

/** Time-boxed access to a connection, created when its access request is approved. */
export interface Grant {
  readonly id: string;
  readonly reviewId: string;
  readonly sub: string;
  readonly email?: string;
  readonly connection: string;
  readonly reason?: string;
  readonly approvedBy: readonly string[];
  readonly createdAt: number;
  readonly expiresAt: number;
}

function hexId(): string {
  return randomUUID().replaceAll('-', '').slice(0, 24);
}

/** A new, globally unique review id (`r_` + 24 hex digits). */
export function newReviewId(): string {
  return `r_${hexId()}`;
}

/** A new, globally unique grant id (`g_` + 24 hex digits). */
export function newGrantId(): string {
  return `g_${hexId()}`;
}

/** Whether a review's summary is an access request's. */
export function isGrantSummary(summary: RequestSummary | GrantSummary): summary is GrantSummary {
  return (summary as GrantSummary).durationMs !== undefined;
}
