import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../server/config/load.js';
import { compilePolicies } from '../../server/policy/policy-engine.js';
import { MAX_POLICY_JSON_DEPTH, type PolicySubject } from '../../server/policy/policy-input.js';

const subject: PolicySubject = {
  principal: { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 0, issuer: 'https://idp' },
  connection: { name: 'llm', type: 'http', labels: {} },
  session: { id: 'ses_1' },
  method: 'POST',
  path: '/v1/chat/completions',
  headers: {},
};

function engineOf(when: string, action: 'deny' | 'allow') {
  const config = validateConfig({ identity: { issuer: 'https://idp.example.com', audience: 'a', cli_client_id: 'c' }, policies: [{ name: 'r', when, action }], policy_default: 'deny' });
  return compilePolicies({ policies: config.policies, policyDefault: config.policy_default, defaultTimeoutMs: 60_000, clock: () => new Date(0) });
}

const nested = (depth: number) => JSON.parse('{"a":'.repeat(depth) + '1' + '}'.repeat(depth)) as unknown;

describe('request JSON nested past the policy bound', () => {
  it('fails a deny rule that reads it with ERR_POLICY_ERROR at once, instead of comparing 4000 levels for seconds', () => {
    const engine = engineOf('request.json == {"a": 1}', 'deny');
    const json = nested(4000);
    expect(() => engine.evaluate(subject, { json, size: 20_000 })).toThrow(expect.objectContaining({ code: 'ERR_POLICY_ERROR', message: expect.stringContaining(`deeper than ${MAX_POLICY_JSON_DEPTH} levels`) }));
  });

  it('lets no allow rule match on it, and judges JSON at the bound as before', () => {
    expect(engineOf('has(request.json.a)', 'allow').evaluate(subject, { json: nested(MAX_POLICY_JSON_DEPTH + 1), size: 1 })).toMatchObject({ action: 'deny' });
    expect(engineOf('has(request.json.a)', 'allow').evaluate(subject, { json: nested(MAX_POLICY_JSON_DEPTH - 1), size: 1 })).toMatchObject({ action: 'allow', rule: 'r' });
    expect(engineOf('request.json != {"a": 1}', 'deny').evaluate(subject, { json: nested(MAX_POLICY_JSON_DEPTH - 1), size: 1 })).toMatchObject({ action: 'deny', rule: 'r' });
  });
});
