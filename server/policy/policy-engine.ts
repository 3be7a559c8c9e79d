import { SluiceError } from '../../shared/errors.js';
import { parseDuration } from '../config/duration.js';
import {
  compileCel,
  createPolicyEnvironment,
  describeCompileProblem,
  describeEvaluationError,
  isCompileProblem,
  readsRequestBody,
  readsUsage,
  type CelPredicate,
  type PolicyActivation,
} from './cel-expression.js';
import type { PolicyRule } from './policy-config.js';
import { policyInput, type PolicyBody, type PolicySubject, type PolicyUsage } from './policy-input.js';

/** What policy decided; `rule` names the rule that matched (absent when the default applied). */
export type PolicyDecision =
  | { readonly action: 'allow'; readonly rule?: string; readonly mask?: readonly string[]; readonly maskRequest?: readonly string[] }
  | { readonly action: 'deny'; readonly rule?: string; readonly reason: string; readonly mask?: readonly string[]; readonly maskRequest?: readonly string[] }
  | {
      readonly action: 'review';
      readonly rule: string;
      readonly reviewers: readonly string[];
      readonly timeoutMs: number;
      readonly minApprovals: number;
      /** The rule's `message`, shown to reviewers. */
      readonly note?: string;
      readonly mask?: readonly string[];
      readonly maskRequest?: readonly string[];
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

/** The rules could not decide without the body: rule `from` (0-based) is the first whose outcome depends on it. */
export interface BodyNeeded {
  readonly needsBody: true;
  readonly from: number;
  /** Goes on from rule `from` with the body, on the same activation. */
  withBody(body: PolicyBody): PolicyDecision;
}

/** Compiled rules, evaluated per request with no parsing. */
export interface PolicyEngine {
  /** Whether some rule may look at the body at all. */
  readonly readsBody: boolean;
  /** Whether some rule may look at the caller's `usage`: only then is it read from the store. */
  readonly readsUsage: boolean;
  readonly ruleCount: number;
  /**
   * First matching rule wins; throws ERR_POLICY_ERROR when a deny or review rule fails on this request
   * (fail closed); an allow rule that fails does not match. `from` skips rules already known not to match.
   */
  evaluate(subject: PolicySubject, body: PolicyBody, from?: number, usage?: PolicyUsage): PolicyDecision;
  /**
   * The decision if no rule before the decisive one needs the body, else where the body is first needed.
   * CEL's logical operators decide without an operand they do not need (`connection.name == "x" &&
   * request.json.model == "y"` is false on another connection whatever the body), so a body is read only
   * for a request whose outcome depends on it. `usage` is what rules see of the caller's counts (zeros when absent).
   */
  evaluateWithoutBody(subject: PolicySubject, usage?: PolicyUsage): PolicyDecision | BodyNeeded;
}

interface CompiledRule {
  readonly rule: PolicyRule;
  readonly predicate: CelPredicate;
  readonly decision: PolicyDecision;
  /** Whether the rule's source mentions the body at all (only such a rule can need it). */
  readonly readsBody: boolean;
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;

function decisionOf(rule: PolicyRule, defaultTimeoutMs: number): PolicyDecision {
  const mask = rule.mask.length > 0 ? rule.mask : undefined;
  // Only present when the rule names profiles: a decision without it is what every decision was before.
  const maskRequest = rule.mask_request.length > 0 ? { maskRequest: rule.mask_request } : {};
  switch (rule.action) {
    case 'allow':
      return Object.freeze({ action: 'allow', rule: rule.name, mask, ...maskRequest });
    case 'deny':
      return Object.freeze({ action: 'deny', rule: rule.name, reason: rule.message ?? `Policy "${rule.name}" denies this request`, mask, ...maskRequest });
    case 'review':
      return Object.freeze({
        action: 'review',
        rule: rule.name,
        reviewers: rule.reviewers,
        timeoutMs: rule.timeout === undefined ? defaultTimeoutMs : parseDuration(rule.timeout),
        minApprovals: rule.min_approvals,
        note: rule.message,
        mask,
        ...maskRequest,
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
    return { rule, predicate, decision: decisionOf(rule, defaultTimeoutMs), readsBody: readsRequestBody(rule.when) };
  });
  const fallback: PolicyDecision =
    options.policyDefault === 'deny'
      ? Object.freeze({ action: 'deny', reason: 'No policy allows this request (policy_default: deny)' })
      : Object.freeze({ action: 'allow' });

  const run = (activation: PolicyActivation, subject: PolicySubject, from: number, bodyRead: boolean): PolicyDecision | { needsBody: true; from: number } => {
    for (let i = from; i < rules.length; i++) {
      const { rule, predicate, decision, readsBody } = rules[i]!;
      let value: unknown;
      try {
        value = predicate.evaluate(activation);
      } catch (err) {
        // Without the body, a rule that reads it and fails in any way (`request.size > 1 || labels.x == "y"`
        // may report the missing label, not the unread size) might have matched with it.
        if (err === BODY_UNREAD || (!bodyRead && readsBody)) return { needsBody: true, from: i };
        // Fail closed both ways: an allow rule that fails allows nothing, and a deny or review rule that fails
        // refuses, a missing field included. A typo (`max_token`) must not open the gate it was written to close;
        // a rule over an optional field says so with has() or `.?`.
        if (rule.action === 'allow') continue;
        throw ruleFailed(rule, subject, describeEvaluationError(rule.when, err), err);
      }
      if (value === true) return decision;
      if (value !== false) {
        if (rule.action === 'allow') continue;
        throw ruleFailed(rule, subject, `it gave ${typeof value} instead of a boolean`);
      }
    }
    return fallback;
  };

  return {
    readsBody: rules.some((r) => r.readsBody),
    readsUsage: options.policies.some((r) => readsUsage(r.when)),
    ruleCount: rules.length,
    evaluate(subject, body, from = 0, usage) {
      if (rules.length === 0) return fallback;
      return decided(run(policyInput(subject, body, clock(), usage), subject, from, true));
    },
    evaluateWithoutBody(subject, usage) {
      if (rules.length === 0) return fallback;
      let given: PolicyBody | undefined;
      const activation = policyInput(
        subject,
        () => {
          if (given === undefined) throw BODY_UNREAD;
          return given;
        },
        clock(),
        usage,
      );
      const early = run(activation, subject, 0, false);
      if (!('needsBody' in early)) return early;
      return {
        needsBody: true,
        from: early.from,
        withBody: (body) => {
          given = body;
          return decided(run(activation, subject, early.from, true));
        },
      };
    },
  };
}

/** The refusal of a request on which a deny or review rule failed; names the rule and what failed. */
function ruleFailed(rule: PolicyRule, subject: PolicySubject, why: string, cause?: unknown): SluiceError {
  return new SluiceError('ERR_POLICY_ERROR', {
    message: `Policy "${rule.name}" could not be evaluated on this request: ${why}`,
    details: { rule: rule.name, action: rule.action, connection: subject.connection.name },
    cause,
  });
}

/** A run given the body: nothing in it can ask for the body again. */
function decided(outcome: PolicyDecision | { needsBody: true; from: number }): PolicyDecision {
  if ('needsBody' in outcome) throw new Error('a rule asked for the body it was given');
  return outcome;
}

/**
 * Thrown by the activation of `evaluateWithoutBody` when a rule reaches for the body before it is read.
 * One instance, made once: a stack trace per throw would cost more than the rule.
 */
const BODY_UNREAD = new Error('The request body has not been read');

