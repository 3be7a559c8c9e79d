import type { FastifyInstance } from 'fastify';
import type { ConnectionJson, ConnectionRuleJson } from '../../shared/connections-api.js';
import type { Config, ConnectionConfig } from '../config/schema.js';
import { hasRole, inAnyGroup, type Principal } from '../identity/principal.js';
import type { GatewayDeps } from '../gateway-deps.js';
import type { PolicyRule } from '../policy/policy-config.js';
import { connectionTypeOf } from '../protocols/connection-types.js';
import { compileCallerRules, type CallerRule, type CallerRules } from '../policy/rules-for-caller.js';

/** What applies to a caller on a connection besides the connection's own settings. */
export interface ConnectionView {
  readonly rules: readonly CallerRule[];
  readonly policyReadAhead: number;
  readonly policyDefault: 'allow' | 'deny';
  /** Hold time of review rules that name none (`approval.default_timeout`). */
  readonly defaultTimeout: string;
  /** Admins see each rule's CEL source; others see what it is called and what it says. */
  readonly showSource: boolean;
}

function ruleJson({ rule, matches }: CallerRule, view: ConnectionView, c: ConnectionConfig): ConnectionRuleJson {
  // A connection type that cannot hold an exchange for reviewers (tcp, grpc) refuses on a review rule, as a deny does.
  const review = rule.action === 'review' && connectionTypeOf(c.type).reviewable;
  const message =
    rule.action === 'review' && !review ? `Policy "${rule.name}" requires a review, which ${c.type} connection "${c.name}" cannot wait for` : (rule.message ?? null);
  return {
    name: rule.name,
    action: review ? 'review' : 'deny',
    description: rule.description ?? null,
    message,
    matches,
    reviewers: review ? [...rule.reviewers] : null,
    min_approvals: review ? rule.min_approvals : null,
    timeout: review ? (rule.timeout ?? view.defaultTimeout) : null,
    ...(view.showSource ? { when: rule.when } : {}),
  };
}

/** What a caller may learn of a connection: never its upstream or credentials. */
export function describeConnection(c: ConnectionConfig, view: ConnectionView): ConnectionJson {
  const http = c.type === 'http';
  return {
    name: c.name,
    type: c.type,
    description: c.description ?? null,
    labels: c.labels,
    applies: {
      masking: c.masking,
      record: c.record,
      max_body: http ? c.max_body : null,
      policy_read_ahead: http ? view.policyReadAhead : null,
      requires_grant: c.requires_grant,
      policy_default: view.policyDefault,
    },
    rules: view.rules.map((r) => ruleJson(r, view, c)),
  };
}

/** Connections the principal may use. */
export function connectionsFor(principal: Principal, connections: readonly ConnectionConfig[]): ConnectionConfig[] {
  return connections.filter((c) => inAnyGroup(principal, c.allow_groups));
}

/**
 * `GET /v1/connections`: the connections the caller may use, what applies to each, and the deny and review
 * rules the caller may meet there, so a held call is expected rather than mistaken for a hang.
 */
export function registerConnectionsRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  // Compiled once per configuration: a reload brings a new `policies` array, and the old one is let go.
  const compiled = new WeakMap<readonly PolicyRule[], CallerRules>();
  const rulesOf = (config: Config): CallerRules => {
    let rules = compiled.get(config.policies);
    if (rules === undefined) {
      rules = compileCallerRules(config.policies);
      compiled.set(config.policies, rules);
    }
    return rules;
  };

  app.get('/v1/connections', async (req) => {
    const principal = await deps.authenticate(req.headers);
    const config = deps.config;
    const rules = rulesOf(config);
    const showSource = hasRole(principal, 'admin');
    return {
      connections: connectionsFor(principal, config.connections).map((c) =>
        describeConnection(c, {
          // A tcp stream is one CONNECT to the upstream, so its rules can be judged in full now.
          rules: rules.for(principal, c, c.type === 'tcp' ? { method: 'CONNECT', path: c.upstream.slice('tcp://'.length).replace(/\/$/, '') } : undefined),
          policyReadAhead: config.policy_read_ahead,
          policyDefault: config.policy_default,
          defaultTimeout: config.approval.default_timeout,
          showSource,
        }),
      ),
    };
  });
}
