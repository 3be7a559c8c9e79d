/**
 * JSON shapes of the reviews and grants API, shared by the gateway (which produces them) and the CLI
 * (which validates what it receives). Times are ISO 8601 strings.
 */
import { z } from 'zod';

const person = z.object({
  sub: z.string(),
  email: z.string().nullable(),
});

/** What reviewers see of a held request, or of an access request. */
export const reviewSummarySchema = z.object({
  method: z.string().optional(),
  path: z.string().optional(),
  model: z.string().nullable().optional(),
  size: z.number().optional(),
  duration_ms: z.number().optional(),
});

/** One review. */
export const reviewSchema = z.object({
  id: z.string(),
  kind: z.enum(['request', 'grant']),
  status: z.enum(['pending', 'approved', 'rejected', 'expired', 'abandoned']),
  requester: person,
  connection: z.string(),
  rule: z.string(),
  reason: z.string().nullable(),
  note: z.string().nullable(),
  summary: reviewSummarySchema,
  reviewers: z.array(z.string()),
  min_approvals: z.number().int(),
  approvals: z.array(z.object({ sub: z.string(), email: z.string().nullable(), at: z.string(), reason: z.string().nullable() })),
  created_at: z.string(),
  expires_at: z.string(),
  resolved_at: z.string().nullable(),
  resolved_by: person.nullable(),
  resolution: z.string().nullable(),
  session_id: z.string().nullable(),
  request_id: z.string().nullable(),
  /**
   * A request answered at once (`Prefer: respond-async`): `until` when the approved request may be sent
   * again (null until approved), and the re-send that used the approval. Null for held requests and grants.
   */
  resend: z
    .object({ until: z.string().nullable(), resent_at: z.string().nullable(), resent_request_id: z.string().nullable() })
    .nullable()
    .optional(),
});

/** A review as the API returns it. */
export type ReviewJson = z.infer<typeof reviewSchema>;

/**
 * `GET /v1/reviews/:id`: the review, and for a held request the body as its recording keeps it (masked,
 * at most 4096 characters, JSON pretty-printed); null for access requests and where no body is kept.
 */
export const reviewDetailSchema = reviewSchema.extend({ body: z.string().nullable().default(null) });

/** A review with its body, as `GET /v1/reviews/:id` returns it. */
export type ReviewDetailJson = z.infer<typeof reviewDetailSchema>;

/** `GET /v1/reviews`. */
export const reviewListSchema = z.object({ reviews: z.array(reviewSchema) });

/** One time-boxed access grant. */
export const grantSchema = z.object({
  id: z.string(),
  review_id: z.string(),
  sub: z.string(),
  email: z.string().nullable(),
  connection: z.string(),
  reason: z.string().nullable(),
  approved_by: z.array(z.string()),
  created_at: z.string(),
  expires_at: z.string(),
  active: z.boolean(),
});

/** A grant as the API returns it. */
export type GrantJson = z.infer<typeof grantSchema>;

/** `GET /v1/grants`: the caller's grants and access requests. */
export const grantListSchema = z.object({ grants: z.array(grantSchema), requests: z.array(reviewSchema) });

/** `POST /v1/reviews/:id/approve`: the review, and the grant an approved access request created. */
export const approveResultSchema = z.object({ review: reviewSchema, grant: grantSchema.nullable() });

/** One event of `GET /v1/reviews/watch` (the SSE `data:` line; the SSE `event:` is `type`). */
export const reviewWatchEventSchema = z.object({
  type: z.string(),
  at: z.string(),
  review: reviewSchema,
  actor: person.nullable(),
});

/** A review watch event as the API sends it. */
export type ReviewWatchEventJson = z.infer<typeof reviewWatchEventSchema>;

/**
 * The 202 answer to a request that needs review when the caller sent `Prefer: respond-async`: nothing was
 * forwarded; `poll` is the review (`GET`, with `?wait=30s` to wait for the decision). Once approved, the same
 * request sent again within `resend_window` is forwarded without a second hold.
 */
export const pendingReviewAnswerSchema = z.object({
  review: z.object({
    id: z.string(),
    status: z.literal('pending'),
    rule: z.string(),
    reviewers: z.array(z.string()),
    expires_at: z.string(),
    poll: z.string(),
    resend_window: z.string(),
    message: z.string(),
  }),
});

/** The 202 answer's body. */
export type PendingReviewAnswerJson = z.infer<typeof pendingReviewAnswerSchema>;
