import type { GrantJson, PendingReviewAnswerJson, ReviewJson, ReviewWatchEventJson } from '../../shared/reviews-api.js';
import type { ReviewEvent } from './review-feed.js';
import { isGrantSummary, resendDeadline, type Grant, type Review, type ReviewPerson } from './review.js';

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function personJson(p: ReviewPerson): { sub: string; email: string | null } {
  return { sub: p.sub, email: p.email ?? null };
}

/** A review as the REST API, watchers and webhooks show it. */
export function reviewJson(review: Review): ReviewJson {
  const s = review.summary;
  return {
    id: review.id,
    kind: review.kind,
    status: review.status,
    requester: personJson(review.requester),
    connection: review.connection,
    rule: review.rule,
    reason: review.reason ?? null,
    note: review.note ?? null,
    summary: isGrantSummary(s) ? { duration_ms: s.durationMs } : { method: s.method, path: s.path, model: s.model ?? null, size: s.size },
    reviewers: [...review.reviewers],
    min_approvals: review.minApprovals,
    approvals: review.approvals.map((a) => ({ sub: a.sub, email: a.email ?? null, at: iso(a.at), reason: a.reason ?? null })),
    created_at: iso(review.createdAt),
    expires_at: iso(review.expiresAt),
    resolved_at: review.resolvedAt === undefined ? null : iso(review.resolvedAt),
    resolved_by: review.resolvedBy === undefined ? null : personJson(review.resolvedBy),
    resolution: review.resolution ?? null,
    session_id: review.sessionId ?? null,
    request_id: review.requestId ?? null,
    resend: resendJson(review),
  };
}

function resendJson(review: Review): ReviewJson['resend'] {
  if (review.resend === undefined) return null;
  const until = resendDeadline(review);
  return {
    until: until === undefined ? null : iso(until),
    resent_at: review.resent === undefined ? null : iso(review.resent.at),
    resent_request_id: review.resent?.requestId ?? null,
  };
}

/** Where a review is read: its requester polls it there (`?wait=30s` waits for the decision). */
export function reviewPath(id: string): string {
  return `/v1/reviews/${id}`;
}

/** The body of the 202 that answers a request needing review when its caller asked not to be held. */
export function pendingReviewAnswer(review: Review): PendingReviewAnswerJson {
  const window = formatDuration(review.resend?.windowMs ?? 0);
  return {
    review: {
      id: review.id,
      status: 'pending',
      rule: review.rule,
      reviewers: [...review.reviewers],
      expires_at: iso(review.expiresAt),
      poll: reviewPath(review.id),
      resend_window: window,
      message:
        `Policy "${review.rule}" needs a review of this request (${review.id}, reviewers: ${review.reviewers.join(', ')}); nothing was forwarded. ` +
        `Once it is approved, send the same request again within ${window} and it is forwarded.`,
    },
  };
}

/** A grant as the REST API shows it. */
export function grantJson(grant: Grant, now: number): GrantJson {
  return {
    id: grant.id,
    review_id: grant.reviewId,
    sub: grant.sub,
    email: grant.email ?? null,
    connection: grant.connection,
    reason: grant.reason ?? null,
    approved_by: [...grant.approvedBy],
    created_at: iso(grant.createdAt),
    expires_at: iso(grant.expiresAt),
    active: grant.expiresAt > now,
  };
}

/** A review event as watchers and JSON webhooks receive it; `grant.revoked` adds the ended grant and the reason. */
export function reviewEventJson(event: ReviewEvent): ReviewWatchEventJson & { grant?: GrantJson; reason?: string | null } {
  const json = {
    type: event.type,
    at: iso(event.at),
    review: reviewJson(event.review),
    actor: event.actor === undefined ? null : personJson(event.actor),
  };
  if (event.grant === undefined) return json;
  return { ...json, grant: grantJson(event.grant, event.at), reason: event.reason ?? null };
}

function who(p: ReviewPerson | undefined): string {
  return p === undefined ? 'someone' : (p.email ?? p.sub);
}

/** How long, in the units people use: `2h`, `90m`, `45s`. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${Math.round(ms / 1000)}s`;
}

/** One line describing what a review asks for. */
export function describeReviewRequest(review: Review): string {
  const s = review.summary;
  if (isGrantSummary(s)) return `access to ${review.connection} for ${formatDuration(s.durationMs)}`;
  return `${s.method} ${s.path}${s.model ? ` (model ${s.model})` : ''} on ${review.connection}`;
}

/** One human sentence per event: the Slack webhook's text. */
export function describeReviewEvent(event: ReviewEvent): string {
  const r = event.review;
  switch (event.type) {
    case 'review.created':
      return (
        `${r.id}: ${who(r.requester)} asks for ${describeReviewRequest(r)}` +
        `${r.reason ? ` — "${r.reason}"` : ''} (rule ${r.rule}; reviewers ${r.reviewers.join(', ')}; expires ${iso(r.expiresAt)}). ` +
        `Decide with \`sluice review approve ${r.id}\` or \`sluice review reject ${r.id} --reason …\``
      );
    case 'review.approval':
      return `${r.id}: approved by ${who(event.actor)} (${r.approvals.length} of ${r.minApprovals})`;
    case 'review.approved':
      return `${r.id}: approved by ${who(event.actor)} — ${describeReviewRequest(r)} for ${who(r.requester)}`;
    case 'review.rejected':
      return `${r.id}: rejected by ${who(event.actor)}${r.resolution ? `: ${r.resolution}` : ''}`;
    case 'review.expired':
      return `${r.id}: expired without a decision`;
    case 'review.abandoned':
      return `${r.id}: withdrawn (${r.resolution ?? 'the caller left'})`;
    case 'grant.revoked':
      return `${event.grant?.id ?? r.id}: access of ${who(r.requester)} to ${r.connection} revoked by ${who(event.actor)}${event.reason ? `: ${event.reason}` : ''}`;
  }
}
