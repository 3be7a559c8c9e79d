/**
 * JSON shape of `GET /v1/connections`, shared by the gateway (which produces it) and the CLI (which
 * validates what it receives).
 */
import { z } from 'zod';

/** A deny or review rule that may decide the caller's requests on the connection. */
export const connectionRuleSchema = z.object({
  name: z.string(),
  action: z.enum(['deny', 'review']),
  description: z.string().nullable(),
  /** `deny`: what the caller reads when refused; `review`: what reviewers are shown. */
  message: z.string().nullable(),
  /** `always`: every request of the caller here; `some`: the requests the rule's condition picks out. */
  matches: z.enum(['always', 'some']),
  /** `review` only (null otherwise): who decides, how many must approve, how long a request waits. */
  reviewers: z.array(z.string()).nullable(),
  min_approvals: z.number().int().nullable(),
  timeout: z.string().nullable(),
  /** The rule's CEL source: shown to admins only. */
  when: z.string().optional(),
});

/** One connection the caller may use, and what applies to it. */
export const connectionSchema = z.object({
  name: z.string(),
  type: z.string(),
  description: z.string().nullable(),
  labels: z.record(z.string(), z.string()),
  applies: z.object({
    masking: z.array(z.string()),
    record: z.object({ request_body: z.string(), response_body: z.string(), raw: z.boolean() }),
    /** Largest request body (http), in bytes. */
    max_body: z.number().nullable(),
    /** Bytes of a body policy reads ahead (http); a longer one is refused when a rule needs the body. */
    policy_read_ahead: z.number().nullable(),
    /** Whether calls need an approved access grant (`sluice access request`). */
    requires_grant: z.boolean(),
    /** What applies to a request no rule decides. */
    policy_default: z.enum(['allow', 'deny']),
  }),
  /** In the order they are tried (first match wins); absent rules cannot match the caller here. */
  rules: z.array(connectionRuleSchema),
});

/** A connection as `GET /v1/connections` shows it. */
export type ConnectionJson = z.infer<typeof connectionSchema>;

/** A rule as `GET /v1/connections` shows it. */
export type ConnectionRuleJson = z.infer<typeof connectionRuleSchema>;

/** `GET /v1/connections`. */
export const connectionListSchema = z.object({ connections: z.array(connectionSchema) });
