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
/**
 * Generous: a case that takes this long would be a hang in waiting, not a slow machine. Measured in CPU time
 * of this process, not wall time: on a machine shared with other runs a case may wait for a core for longer.
 */
const CASE_BOUND_MS = 1000;

const alice: Principal = { sub: 'alice', email: 'alice@example.com', groups: ['ml-eng'], roles: [], expiresAt: 0, issuer: 'https://idp' };
const subject: PolicySubject = {
  principal: alice,
  connection: { name: 'llm', type: 'http', labels: {} },
  session: { id: 'ses_1' },
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
    v = arr ? [v] : i % 3 === 0 ? { a: v, role: 'user' } : { messages: [v], b: null };
  }
  return v;
}

const leaf = fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.double(), fc.string({ maxLength: 40 }), fc.constant('a'.repeat(5000) + '!'));

type Shape = 'array' | 'object' | 'mixed';

/** A recipe rather than the value: fast-check prints a failing case, and a 20,000-level value would overflow its printer. */
type Recipe = { kind: 'nested'; depth: number; shape: Shape; leaf: unknown } | { kind: 'wide'; n: number; leaf: unknown } | { kind: 'chat'; depth: number; leaf: unknown } | { kind: 'any'; json: unknown };

function build(r: Recipe): unknown {
  switch (r.kind) {
    case 'nested':
      return nest(r.depth, r.shape, r.leaf);
    case 'wide':
      return { model: 'gpt-4o', messages: Array.from({ length: r.n }, () => ({ role: 'user', content: r.leaf })), tags: Array(r.n).fill('y') };
    case 'chat':
      return { messages: [{ role: 'system', content: nest(r.depth, 'mixed', r.leaf) }], n: r.leaf, tools: [{ name: 'shell', schema: nest(r.depth, 'object', 1) }] };
    case 'any':
      return r.json;
  }
}

const recipe: fc.Arbitrary<Recipe> = fc.oneof(
  fc.record({ kind: fc.constant('nested' as const), depth: fc.oneof(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 1, max: 20_000 })), shape: fc.constantFrom<Shape>('array', 'object', 'mixed'), leaf }),
  fc.record({ kind: fc.constant('wide' as const), n: fc.integer({ min: 0, max: 100_000 }), leaf }),
  fc.record({ kind: fc.constant('chat' as const), depth: fc.integer({ min: 1, max: 3000 }), leaf }),
  fc.record({ kind: fc.constant('any' as const), json: fc.jsonValue({ maxDepth: 6 }) }),
);

describe('policy rules on hostile request JSON (fuzz)', () => {
  it('decides or refuses with ERR_POLICY_ERROR within a bound, for deep nesting and huge arrays', { timeout: fuzzSettings(RUNS).timeoutMs }, async () => {
    let slowest = 0;
    await fuzz(
      'policy-cel: deep and huge JSON',
      fc.property(recipe, (r) => {
        const json = build(r);
        // the size rules see; not measured with JSON.stringify, which recurses and would overflow on the deep recipes
        const size = 4096;
        const started = process.cpuUsage();
        try {
          const decision = engine.evaluate(subject, { json, size });
          expect(['allow', 'deny']).toContain(decision.action);
        } catch (err) {
          expect(err).toBeInstanceOf(SluiceError);
          expect((err as SluiceError).code).toBe('ERR_POLICY_ERROR');
        }
        const { user, system } = process.cpuUsage(started);
        const took = (user + system) / 1000;
        slowest = Math.max(slowest, took);
        expect(took).toBeLessThan(CASE_BOUND_MS);
      }),
      RUNS,
    );
    console.log(JSON.stringify({ target: 'policy-cel: deep and huge JSON', slowest_case_ms: Math.round(slowest) }));
  });
});
