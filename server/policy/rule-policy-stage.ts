import type { GrantGate } from '../approval/grant-gate.js';
import type { PolicyEngine, PolicyDecision } from './policy-engine.js';
import type { PolicyBody, PolicySubject } from './policy-input.js';

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
}

/** The pipeline's policy stage backed by configured rules. */
export interface RulePolicyStage {
  /** Whether the current rules read the body (the pipeline then reads it ahead, bounded, before `decide`). */
  readonly readsBody: boolean;
  decide(exchange: PolicyExchange, body?: PolicyBody): Promise<PolicyDecision>;
}

const NO_BODY: PolicyBody = Object.freeze({ json: null, size: 0 });

/** Creates the stage: grant check first, then the first matching rule. */
export function createRulePolicyStage(options: RulePolicyStageOptions): RulePolicyStage {
  return {
    get readsBody() {
      return options.engine().readsBody;
    },
    async decide(exchange, body = NO_BODY) {
      if (options.grants !== undefined && exchange.connection.requires_grant === true) {
        await options.grants.check(exchange.principal, { name: exchange.connection.name, requires_grant: true });
      }
      return options.engine().evaluate(exchange, body);
    },
  };
}
