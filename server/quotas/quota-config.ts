import { z } from 'zod';

const count = z.number().int().positive();

/** The limits a rule may set, in the order they are checked. */
export const QUOTA_LIMITS = ['requests_per_minute', 'tokens_per_day', 'tokens_per_month', 'input_tokens_per_day', 'output_tokens_per_day'] as const;
export type QuotaLimit = (typeof QUOTA_LIMITS)[number];

/**
 * One `quotas:` rule: whom it applies to (every selector given must match; an absent one matches all),
 * whose count it keeps (`per`), and its limits.
 */
export const quotaRuleSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 letters, digits, ".", "_" or "-"'),
    users: z.array(z.string().min(1)).min(1).optional(),
    groups: z.array(z.string().min(1)).min(1).optional(),
    connections: z.array(z.string().min(1)).min(1).optional(),
    models: z.array(z.string().min(1)).min(1).optional(),
    per: z.enum(['user', 'group', 'connection']).default('user'),
    requests_per_minute: count.optional(),
    tokens_per_day: count.optional(),
    tokens_per_month: count.optional(),
    input_tokens_per_day: count.optional(),
    output_tokens_per_day: count.optional(),
    /** Calls in flight at once (streams and plain calls alike, until the answer ends); not a window, a count of slots. */
    concurrent_streams: count.optional(),
  })
  .refine((r) => r.concurrent_streams !== undefined || QUOTA_LIMITS.some((l) => r[l] !== undefined), {
    message: `a quota must set at least one of ${QUOTA_LIMITS.join(', ')}, concurrent_streams`,
  });

export type QuotaRule = z.output<typeof quotaRuleSchema>;

/** The `quotas:` section: rule names are unique, since counters are kept under them. */
export const quotasSchema = z
  .array(quotaRuleSchema)
  .default([])
  .superRefine((rules, ctx) => {
    const seen = new Set<string>();
    rules.forEach((r, i) => {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate quota name "${r.name}"` });
      seen.add(r.name);
    });
  });
