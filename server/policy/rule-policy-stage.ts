import { isSluiceError } from '../../shared/errors.js';
import type { GrantGate } from '../approval/grant-gate.js';
import type { PolicyEngine, PolicyDecision } from './policy-engine.js';
import type { PolicyBody, PolicySubject, PolicyUsage } from './policy-input.js';

/** The exchange as the policy stage sees it. */
export interface PolicyExchange extends PolicySubject {
  readonly connection: PolicySubject['connection'] & { readonly requires_grant?: boolean };
}

/** Options of {@link createRulePolicyStage}. */
export interface RulePolicyStageOptions {
  /** The current rules; read per request so a reload takes effect. */
  readonly engine: () => PolicyEngine;
  /** Connections with `requires_grant: true` need an active grant on every path (tunnel and proxy). */
  readonly grants?: GrantGate;
  /** Reads the caller's counts in the quota windows; asked only when a rule names `usage`. Absent: rules see zeros. */
  readonly usage?: (exchange: PolicyExchange) => Promise<PolicyUsage>;
  /** Where a rule that fails to evaluate is reported (a warning: the rule needs fixing). Default: nowhere. */
  readonly log?: { warn(fields: Record<string, unknown>, message: string): void };
}

/** The pipeline's policy stage backed by configured rules. */
export interface RulePolicyStage {
  /** Reads the body (through `readBody`) only when a rule's outcome depends on it. */
  decide(exchange: PolicyExchange, readBody?: () => Promise<PolicyBody>): Promise<PolicyDecision>;
}

const NO_BODY: PolicyBody = Object.freeze({ json: null, size: 0 });

/** Creates the stage: grant check first, then the first matching rule. */
export function createRulePolicyStage(options: RulePolicyStageOptions): RulePolicyStage {
  return {
    async decide(exchange, readBody) {
      if (options.grants !== undefined && exchange.connection.requires_grant === true) {
        await options.grants.check(exchange.principal, { name: exchange.connection.name, requires_grant: true });
      }
      const engine = options.engine();
      // A store read per request, paid only while some rule looks at usage.
      const usage = engine.readsUsage && options.usage !== undefined ? await options.usage(exchange) : undefined;
      try {
        const early = engine.evaluateWithoutBody(exchange, usage);
        if (!('needsBody' in early)) return early;
        return early.withBody(readBody === undefined ? NO_BODY : await readBody());
      } catch (err) {
        // Each such refusal is a rule that does not say what its author meant: operators must hear of it.
        if (isSluiceError(err) && err.code === 'ERR_POLICY_ERROR') {
          options.log?.warn({ code: err.code, ...err.details, error: err.message }, 'policy rule failed to evaluate; request refused');
        }
        throw err;
      }
    },
  };
}
