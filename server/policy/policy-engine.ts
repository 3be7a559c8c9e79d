import { SluiceError } from '../../shared/errors.js';
import { parseDuration } from '../config/duration.js';
import {
  compileCel,
  createPolicyEnvironment,
  describeCompileProblem,
  describeEvaluationError,
  isCompileProblem,
  isMissingField,
  readsRequestBody,
  type CelPredicate,
} from './cel-expression.js';
import type { PolicyRule } from './policy-config.js';
import { policyInput, type PolicyBody, type PolicySubject } from './policy-input.js';

/** What policy decided; `rule` names the rule that matched (absent when the default applied). */
export type PolicyDecision =
  | { readonly action: 'allow'; readonly rule?: string; readonly mask?: readonly string[] }
  | { readonly action: 'deny'; readonly rule?: string; readonly reason: string; readonly mask?: readonly string[] }
  | {
      readonly action: 'review';
      readonly rule: string;
      readonly reviewers: readonly string[];
      readonly timeoutMs: number;
      readonly minApprovals: number;
      /** The rule's `message`, shown to reviewers. */
      readonly note?: string;
      readonly mask?: readonly string[];
    };

/** Options of {@link compilePolicies}. */
export interface PolicyEngineOptions {
  readonly policies: readonly PolicyRule[];
  /** What applies when no rule matches. Default `allow`. */
  readonly policyDefault?: 'allow' | 'deny';
  /** Hold time of review rules without `timeout`. Default 10 minutes. */
  readonly defaultTimeoutMs?: number;
  /** The `now` rules see; default the wall clock. */
  readonly clock?: () => Date;
}

/** Compiled rules, evaluated per request with no parsing. */
export interface PolicyEngine {
  /** Whether some rule may look at the body, so the pipeline must read it ahead (bounded) before deciding. */
  readonly readsBody: boolean;
  readonly ruleCount: number;
  /** First matching rule wins; throws ERR_POLICY_ERROR when a rule fails on this request (fail closed). */
  evaluate(subject: PolicySubject, body: PolicyBody): PolicyDecision;
}

interface CompiledRule {
  readonly rule: PolicyRule;
  readonly predicate: CelPredicate;
  readonly decision: PolicyDecision;
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;

function decisionOf(rule: PolicyRule, defaultTimeoutMs: number): PolicyDecision {
  const mask = rule.mask.length > 0 ? rule.mask : undefined;
  switch (rule.action) {
    case 'allow':
      return Object.freeze({ action: 'allow', rule: rule.name, mask });
    case 'deny':
      return Object.freeze({ action: 'deny', rule: rule.name, reason: rule.message ?? `Policy "${rule.name}" denies this request`, mask });
    case 'review':
      return Object.freeze({
        action: 'review',
        rule: rule.name,
        reviewers: rule.reviewers,
        timeoutMs: rule.timeout === undefined ? defaultTimeoutMs : parseDuration(rule.timeout),
        minApprovals: rule.min_approvals,
        note: rule.message,
        mask,
      });
  }
}

/** Compiles every rule once (the config loader has already reported bad expressions; this throws if one slipped by). */
export function compilePolicies(options: PolicyEngineOptions): PolicyEngine {
  const env = createPolicyEnvironment();
  const defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const clock = options.clock ?? (() => new Date());
  const rules: CompiledRule[] = options.policies.map((rule, i) => {
    const predicate = compileCel(env, rule.when);
    if (isCompileProblem(predicate)) {
      throw new SluiceError('ERR_CONFIG_INVALID', { message: `policies[${i}].when: ${describeCompileProblem(predicate)}` });
    }
    return { rule, predicate, decision: decisionOf(rule, defaultTimeoutMs) };
  });
  const fallback: PolicyDecision =
    options.policyDefault === 'deny'
      ? Object.freeze({ action: 'deny', reason: 'No policy allows this request (policy_default: deny)' })
      : Object.freeze({ action: 'allow' });

  return {
    readsBody: options.policies.some((r) => readsRequestBody(r.when)),
    ruleCount: rules.length,
    evaluate(subject, body) {
      if (rules.length === 0) return fallback;
      const activation = policyInput(subject, body, clock());
      for (const { rule, predicate, decision } of rules) {
        let value: unknown;
        try {
          value = predicate.evaluate(activation);
        } catch (err) {
          if (isMissingField(err)) continue;
          throw new SluiceError('ERR_POLICY_ERROR', {
            message: `Policy "${rule.name}" could not be evaluated on this request: ${describeEvaluationError(rule.when, err)}`,
            details: { rule: rule.name, connection: subject.connection.name },
            cause: err,
          });
        }
        if (value === true) return decision;
        if (value !== false) {
          throw new SluiceError('ERR_POLICY_ERROR', {
            message: `Policy "${rule.name}" gave ${typeof value} instead of a boolean on this request`,
            details: { rule: rule.name, connection: subject.connection.name },
          });
        }
      }
      return fallback;
    },
  };
}
