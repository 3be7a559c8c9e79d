import { z } from 'zod';
import { durationSchema as duration } from '../config/duration.js';

/**
 * Review events a webhook can subscribe to; the same names as the recording's `review.*` events, and
 * `grant.revoked` for a grant (the approved access request's) ended before its time.
 */
export const REVIEW_EVENT_TYPES = [
  'review.created',
  'review.approval',
  'review.approved',
  'review.rejected',
  'review.expired',
  'review.abandoned',
  'grant.revoked',
] as const;

/** One review event type. */
export type ReviewEventType = (typeof REVIEW_EVENT_TYPES)[number];

const webhookSchema = z.strictObject({
  url: z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' }),
  /** HMAC-SHA256 key; the signature goes in `x-sluice-signature`. */
  secret: z.string().min(16, 'must be at least 16 characters').optional(),
  /** `json`: sluice's own event body; `slack`: `{"text": …}` for a Slack incoming webhook. */
  format: z.enum(['json', 'slack']).default('json'),
  events: z.array(z.enum(REVIEW_EVENT_TYPES)).min(1).default([...REVIEW_EVENT_TYPES]),
  timeout: duration.default('5s'),
  /** Attempts after the first; the delay doubles from `retry_delay` each time. */
  retries: z.number().int().min(0).max(20).default(5),
  retry_delay: duration.default('1s'),
});

/** A validated webhook. */
export type WebhookConfig = z.output<typeof webhookSchema>;

const APPROVAL_DEFAULTS = {
  default_timeout: '10m',
  max_held_per_user: 5,
  max_held_total: 100,
  resend_window: '10m',
  webhooks: [],
} as const;

/** `approval` in sluice.yaml: limits of held requests and who is told about reviews. */
export const approvalSchema = z
  .strictObject({
    /** How long a held request waits when its rule names no `timeout`. */
    default_timeout: duration.default(APPROVAL_DEFAULTS.default_timeout),
    /** Pending reviews one user may have at once (held requests and grant requests). */
    max_held_per_user: z.number().int().min(1).default(APPROVAL_DEFAULTS.max_held_per_user),
    /** Pending reviews on the gateway as a whole. */
    max_held_total: z.number().int().min(1).default(APPROVAL_DEFAULTS.max_held_total),
    /**
     * How long after approval a request answered at once (`Prefer: respond-async`) may be sent again to
     * be forwarded; short, because the approval is a standing permission until it is used.
     */
    resend_window: duration.default(APPROVAL_DEFAULTS.resend_window),
    webhooks: z.array(webhookSchema).default([]),
  })
  .default({ ...APPROVAL_DEFAULTS, webhooks: [] });

/** The validated `approval` section. */
export type ApprovalConfig = z.output<typeof approvalSchema>;

/** `grant` on a connection: who approves access requests and for how long at most. */
export const connectionGrantSchema = z
  .strictObject({
    /** Reviewer groups of access requests; default: the groups of `roles.reviewer`. */
    reviewers: z.array(z.string().min(1)).min(1).optional(),
    max_duration: duration.default('8h'),
    /** How long an access request waits for reviewers. */
    timeout: duration.default('1h'),
    min_approvals: z.number().int().min(1).max(20).default(1),
  })
  .default({ max_duration: '8h', timeout: '1h', min_approvals: 1 });

/** A connection's validated `grant` settings. */
export type ConnectionGrantConfig = z.output<typeof connectionGrantSchema>;

/** The parts of the config the grant checks look at. */
interface GrantConfigView {
  readonly roles: { readonly reviewer: readonly string[] };
  readonly connections: readonly { readonly requires_grant: boolean; readonly grant: ConnectionGrantConfig }[];
}

/** A connection that requires grants needs someone to approve them. */
export function grantConfigProblems(cfg: GrantConfigView): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  cfg.connections.forEach((c, i) => {
    if (c.requires_grant && c.grant.reviewers === undefined && cfg.roles.reviewer.length === 0) {
      problems.push({ path: ['connections', i, 'grant', 'reviewers'], message: 'requires_grant needs reviewers: set grant.reviewers or roles.reviewer' });
    }
  });
  return problems;
}

/** The reviewer groups of a connection's access requests. */
export function grantReviewers(connection: { readonly grant: ConnectionGrantConfig }, roles: { readonly reviewer: readonly string[] }): readonly string[] {
  return connection.grant.reviewers ?? roles.reviewer;
}
