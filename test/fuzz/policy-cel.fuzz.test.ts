import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../server/config/load.js';
import type { Principal } from '../../server/identity/principal.js';
import { compilePolicies } from '../../server/policy/policy-engine.js';
import type { PolicySubject } from '../../server/policy/policy-input.js';
import { SluiceError } from '../../shared/errors.js';
import { fuzz, fuzzSettings } from './fuzz-settings.js';

// Each case builds request JSON of up to ~100k nodes and runs every rule on it: fewer cases than the cheap targets.
const RUNS = 1000;
/** Generous: a case that takes this long would be a hang in waiting, not a slow machine. */
const CASE_BOUND_MS = 1000;

const alice: Principal = { sub: 'alice', email: 'alice@example.com', groups: ['ml-eng'], roles: [], expiresAt: 0, issuer: 'https://idp' };
const subject: PolicySubject = {
  principal: alice,
  connection: { name: 'llm', type: 'http', labels: {} },
  session: { id: 'ses_1', reason: null },
  method: 'POST',
  path: '/v1/chat/completions',
  headers: { 'content-type': 'application/json' },
};

/** Rules that walk, compare, measure and index the caller's JSON; each deny or review, so a failing one refuses. */
const RULES = [
  'request.json.model.startsWith("gpt-5")',
  'size(request.json.messages) > 100',
  'request.json.messages.exists(m, m.role == "system" && m.content.contains("ignore"))',
  'request.json.messages.all(m, has(m.role))',
  'request.json == {"a": [1, 2, {"b": null}]}',
  'request.json.tools.map(t, t.name).exists(n, n == "shell")',
  '"x" in request.json.tags',
  'request.json.?metadata.?customer.?address.orValue("") != ""',
  'request.size > 1000000',
  'request.json.a.b.c.d.e.f.g.h == 1',
  'string(request.json.n).matches("^(a+)+$")',
];

const engine = compilePolicies({
  policies: validateConfig({
    identity: { issuer: 'https://idp.example.com', audience: 'a', cli_client_id: 'c' },
    policies: RULES.map((when, i) => ({ name: `rule-${i}`, when, action: 'deny' })),
  }).policies,
  policyDefault: 'allow',
  defaultTimeoutMs: 60_000,
  clock: () => new Date('2025-03-04T10:30:00Z'),
});

/** Nested `depth` deep in arrays or objects of the keys the rules name. */
function nest(depth: number, shape: 'array' | 'object' | 'mixed', leaf: unknown): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) {
    const arr = shape === 'array' || (shape === 'mixed' && i % 2 === 0);
    v = arr ? [v] : { a: v, b: v === null ? 1 : null, messages: [v], role: 'user' };
  }
  return v;
}

const leaf = fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.double(), fc.string({ maxLength: 40 }), fc.constant('a'.repeat(5000) + '!'));

const hostileJson = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 5000 }), fc.constantFrom('array', 'object', 'mixed'), leaf).map(([d, s, l]) => nest(d, s as 'array', l)),
  fc.tuple(fc.integer({ min: 0, max: 100_000 }), leaf).map(([n, l]) => ({ model: 'gpt-4o', messages: Array.from({ length: n }, () => ({ role: 'user', content: l })), tags: Array(n).fill('y') })),
  fc.tuple(fc.integer({ min: 1, max: 3000 }), leaf).map(([d, l]) => ({ messages: [{ role: 'system', content: nest(d, 'mixed', l) }], n: l, tools: [{ name: nest(d, 'array', 'shell') }] })),
  fc.jsonValue({ maxDepth: 6 }),
);

describe('policy rules on hostile request JSON (fuzz)', () => {
  it('decides or refuses with ERR_POLICY_ERROR within a bound, for deep nesting and huge arrays', { timeout: fuzzSettings(RUNS).timeoutMs }, async () => {
    let slowest = 0;
    await fuzz(
      'policy-cel: deep and huge JSON',
      fc.property(hostileJson, (json) => {
        const size = JSON.stringify(json)?.length ?? 0;
        const started = performance.now();
        try {
          const decision = engine.evaluate(subject, { json, size });
          expect(['allow', 'deny']).toContain(decision.action);
        } catch (err) {
          expect(err).toBeInstanceOf(SluiceError);
          expect((err as SluiceError).code).toBe('ERR_POLICY_ERROR');
        }
        const took = performance.now() - started;
        slowest = Math.max(slowest, took);
        expect(took).toBeLessThan(CASE_BOUND_MS);
      }),
      RUNS,
    );
    console.log(JSON.stringify({ target: 'policy-cel: deep and huge JSON', slowest_case_ms: Math.round(slowest) }));
  });
});
