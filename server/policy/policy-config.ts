import { z } from 'zod';
import { compileCel, createPolicyEnvironment, describeCompileProblem, isCompileProblem } from './cel-expression.js';
import { durationSchema as duration } from '../config/duration.js';

/** Rule names appear in records, reviews and error bodies. */
const ruleName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'must be letters, digits, ".", "_" or "-" (at most 100)');

const group = z.string().min(1);

const ruleCommon = {
  name: ruleName,
  description: z.string().max(500).optional(),
  /** A CEL expression over identity, connection, request, session and now; compiled at load. */
  when: z.string().min(1, 'must be a CEL expression (write "true" to match every request)'),
  /** Masking profiles added for the exchanges this rule matches. */
  mask: z.array(z.string().min(1)).default([]),
  /**
   * Masking profiles applied to the request body of the exchanges this rule matches, on top of the
   * connection's `masking.request`, in its style and with its restore (HTTP connections only).
   */
  mask_request: z.array(z.string().min(1)).default([]),
};

const allowRule = z.strictObject({ ...ruleCommon, action: z.literal('allow') });

const denyRule = z.strictObject({
  ...ruleCommon,
  action: z.literal('deny'),
  /** What the caller reads in the error body. */
  message: z.string().min(1).max(1000).optional(),
});

const reviewRule = z.strictObject({
  ...ruleCommon,
  action: z.literal('review'),
  reviewers: z.array(group).min(1, 'must name at least one reviewer group'),
  /** How long the request is held before it expires; default `approval.default_timeout`. */
  timeout: duration.optional(),
  min_approvals: z.number().int().min(1).max(20).default(1),
  /** Shown to reviewers next to the request. */
  message: z.string().min(1).max(1000).optional(),
});

/** One entry of `policies`: first match wins. */
export const policyRuleSchema = z.discriminatedUnion('action', [allowRule, denyRule, reviewRule]);

/** `policies` in sluice.yaml. */
export const policiesSchema = z.array(policyRuleSchema).default([]);

/** `policy_default`: what happens when no rule matches (after the connection's group check). */
export const policyDefaultSchema = z.enum(['allow', 'deny']).default('allow');

/** A validated policy rule. */
export type PolicyRule = z.output<typeof policyRuleSchema>;

/** A config problem with its path, for the config's `superRefine`. */
export interface PolicyConfigProblem {
  readonly path: (string | number)[];
  readonly message: string;
}

/** The parts of the config the policy checks look at. */
interface PolicyConfigView {
  readonly policies: readonly PolicyRule[];
  readonly masking_profiles?: Readonly<Record<string, unknown>>;
}

/**
 * Every problem of the `policies` section: duplicate names, unknown masking profiles, and each `when`
 * compiled so a bad expression fails the config with its position (`policies[2].when: … at line 1, column 31`).
 */
export function policyConfigProblems(cfg: PolicyConfigView): PolicyConfigProblem[] {
  const problems: PolicyConfigProblem[] = [];
  if (cfg.policies.length === 0) return problems;
  const env = createPolicyEnvironment();
  const names = new Set<string>();
  cfg.policies.forEach((rule, i) => {
    if (names.has(rule.name)) problems.push({ path: ['policies', i, 'name'], message: `duplicate policy name "${rule.name}"` });
    names.add(rule.name);
    const compiled = compileCel(env, rule.when);
    if (isCompileProblem(compiled)) problems.push({ path: ['policies', i, 'when'], message: describeCompileProblem(compiled) });
    if (cfg.masking_profiles !== undefined) {
      rule.mask.forEach((profile, j) => {
        if (!Object.hasOwn(cfg.masking_profiles!, profile)) {
          problems.push({ path: ['policies', i, 'mask', j], message: `no masking profile is named "${profile}"` });
        }
      });
      rule.mask_request.forEach((profile, j) => {
        if (!Object.hasOwn(cfg.masking_profiles!, profile)) {
          problems.push({ path: ['policies', i, 'mask_request', j], message: `no masking profile is named "${profile}"` });
        }
      });
    }
  });
  return problems;
}
