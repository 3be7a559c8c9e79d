import { principalJson, type Principal } from '../identity/principal.js';
import { compileCel, createPolicyEnvironment, isCompileProblem, type CelPredicate, type PolicyActivation } from './cel-expression.js';
import type { PolicyRule } from './policy-config.js';
import { policyInput } from './policy-input.js';

/** A rule that refuses or holds: what a caller may run into. */
export type RefusingRule = Extract<PolicyRule, { action: 'deny' | 'review' }>;

/** A deny or review rule that may decide a caller's requests on a connection. */
export interface CallerRule {
  readonly rule: RefusingRule;
  /**
   * `always`: it decides every request of this caller on this connection (the rules after it are never
   * reached); `some`: only the requests its condition picks out (by the request, the session or the time).
   */
  readonly matches: 'always' | 'some';
}

/** The connection as rules see it. */
export interface RuleConnection {
  readonly name: string;
  readonly type: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** A request known before it is made: a tcp stream is always `CONNECT` to the upstream, without headers or body. */
export interface KnownRequest {
  readonly method: string;
  readonly path: string;
}

/** The configured rules, compiled once, asked per caller and connection. */
export interface CallerRules {
  /**
   * The deny and review rules that may decide a request of `principal` on `connection`, in the order they
   * are tried; `request` when every request there is known in advance.
   */
  for(principal: Principal, connection: RuleConnection, request?: KnownRequest): CallerRule[];
}

/** Thrown by whatever a rule reads that is only known per request; one instance: no stack per throw. */
const UNKNOWN = new Error('known only per request');
const unknown = (): never => {
  throw UNKNOWN;
};
/** `request` and `session` before any request: every read of them is unknown, `has()` and `in` included. */
const UNKNOWN_VALUE = new Proxy({}, { get: unknown, has: unknown, ownKeys: unknown, getOwnPropertyDescriptor: unknown, getPrototypeOf: unknown });

/**
 * Compiles the rules for answering "which rules apply to me here?". Each rule is evaluated with what is
 * known before any request — the caller's identity and the connection — and everything else unknown. CEL's
 * `&&` and `||` decide without an operand they do not need, so `connection.name == "other" && request…` is
 * false here whatever the request, and the rule is left out; a rule whose outcome depends on the request
 * (or that fails without one) is listed as `some`. Conservative: a rule is left out only when it cannot
 * match, so the list may name a rule a given request never meets, never miss one it does.
 */
export function compileCallerRules(policies: readonly PolicyRule[]): CallerRules {
  const env = createPolicyEnvironment();
  const rules: { rule: PolicyRule; predicate: CelPredicate | undefined }[] = policies.map((rule) => {
    const compiled = compileCel(env, rule.when);
    // The config loader refuses rules that do not compile; one that slipped by is listed, never hidden.
    return { rule, predicate: isCompileProblem(compiled) ? undefined : compiled };
  });

  return {
    for(principal, connection, request) {
      const known =
        request === undefined
          ? UNKNOWN_VALUE
          : policyInput({ principal, connection, session: { id: '' }, method: request.method, path: request.path, headers: {} }, { json: null, size: 0 }, new Date(0)).request;
      const activation: PolicyActivation = {
        identity: principalJson(principal),
        connection: { name: connection.name, type: connection.type, labels: connection.labels },
        request: known,
        session: UNKNOWN_VALUE,
        usage: UNKNOWN_VALUE,
        get now(): Date {
          return unknown();
        },
      };
      const out: CallerRule[] = [];
      for (const { rule, predicate } of rules) {
        let value: unknown = UNKNOWN;
        try {
          if (predicate !== undefined) value = predicate.evaluate(activation);
        } catch {
          // Depends on the request, or fails on some: either way it may decide some requests.
        }
        if (value === false) continue;
        if (rule.action === 'allow') {
          // An allow rule that matches every request here decides them all: nothing after it is reached.
          if (value === true) break;
          continue;
        }
        // A deny or review rule that gives a definite value decides every request (a non-boolean refuses them).
        const always = value !== UNKNOWN;
        out.push({ rule, matches: always ? 'always' : 'some' });
        if (always) break;
      }
      return out;
    },
  };
}
