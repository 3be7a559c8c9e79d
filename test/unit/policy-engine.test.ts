import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../server/config/load.js';
import type { Principal } from '../../server/identity/principal.js';
import { compilePolicies } from '../../server/policy/policy-engine.js';
import type { PolicyBody, PolicySubject } from '../../server/policy/policy-input.js';
import { SluiceError } from '../../shared/errors.js';

const alice: Principal = { sub: 'alice', email: 'alice@example.com', groups: ['ml-eng'], roles: [], expiresAt: 0, issuer: 'https://idp' };

function subject(over: Partial<PolicySubject> = {}): PolicySubject {
  return {
    principal: alice,
    connection: { name: 'llm', type: 'http', labels: { tier: 'prod' } },
    session: { id: 'ses_1', reason: 'eval run 42' },
    method: 'POST',
    path: '/v1/chat/completions?api-version=2024',
    headers: { 'content-type': 'application/json', authorization: 'Bearer secret', 'x-team': 'search' },
    ...over,
  };
}

function body(json: unknown): PolicyBody {
  return { json, size: json === null ? 0 : JSON.stringify(json).length };
}

/** Rules as sluice.yaml would have them, validated by the real config schema. */
function engineOf(policies: unknown[], extra: Record<string, unknown> = {}) {
  const config = validateConfig({ identity: { issuer: 'https://idp.example.com', audience: 'a', cli_client_id: 'c' }, policies, ...extra });
  return compilePolicies({ policies: config.policies, policyDefault: config.policy_default, defaultTimeoutMs: 60_000, clock: () => new Date('2025-03-04T10:30:00Z') });
}

const ALLOWED_MODELS = '["demo", "gpt-4o-mini"]';

describe('policy engine', () => {
  const engine = engineOf([
    { name: 'models-allow-list', when: `has(request.json.model) && !(request.json.model in ${ALLOWED_MODELS})`, action: 'deny', message: 'Only demo and gpt-4o-mini may be used here' },
    { name: 'max-tokens', when: 'request.json.?max_tokens.orValue(0) > 4096', action: 'deny', message: 'max_tokens is limited to 4096' },
    { name: 'big-needs-review', when: 'has(request.json.max_tokens) && request.json.max_tokens > 1000', action: 'review', reviewers: ['ml-leads'], timeout: '5m', min_approvals: 2, message: 'large completion' },
    { name: 'interns-read-only', when: '"interns" in identity.groups && request.method != "GET"', action: 'deny' },
  ]);

  it('denies with the rule\'s message when the body names a model outside the allow list', () => {
    expect(engine.evaluate(subject(), body({ model: 'gpt-5', messages: [] }))).toEqual({
      action: 'deny',
      rule: 'models-allow-list',
      reason: 'Only demo and gpt-4o-mini may be used here',
    });
  });

  it('denies max_tokens above the bound; the first matching rule wins over later ones', () => {
    expect(engine.evaluate(subject(), body({ model: 'demo', max_tokens: 8192 }))).toMatchObject({ action: 'deny', rule: 'max-tokens', reason: 'max_tokens is limited to 4096' });
    expect(engine.evaluate(subject(), body({ model: 'demo', max_tokens: 2000 }))).toEqual({
      action: 'review',
      rule: 'big-needs-review',
      reviewers: ['ml-leads'],
      timeoutMs: 300_000,
      minApprovals: 2,
      note: 'large completion',
    });
  });

  it('allows by default when nothing matches; has() and `.?` write rules over optional fields', () => {
    expect(engine.evaluate(subject(), body({ model: 'demo', max_tokens: 100 }))).toEqual({ action: 'allow' });
    // No max_tokens at all: has() says false and `.?max_tokens.orValue(0)` gives 0, so those rules do not match.
    expect(engine.evaluate(subject(), body({ model: 'demo' }))).toEqual({ action: 'allow' });
    // A GET has no JSON body: has(request.json.model) is false, so the allow list does not apply.
    expect(engine.evaluate(subject({ method: 'GET', path: '/v1/models' }), body(null))).toEqual({ action: 'allow' });
  });

  it('refuses when a deny or review rule fails on the request, a missing field included, naming the rule and the field', () => {
    const refusal = (rules: unknown[], b: PolicyBody, over: Partial<PolicySubject> = {}): SluiceError => {
      try {
        engineOf(rules).evaluate(subject(over), b);
      } catch (err) {
        if (err instanceof SluiceError) return err;
        throw err;
      }
      throw new Error('the request was not refused');
    };
    // A typo: max_token for max_tokens. The request it was written to deny is refused, not allowed.
    const typo = refusal([{ name: 'cap', when: 'request.json.max_token > 1000', action: 'deny' }], body({ model: 'gpt-5', max_tokens: 100000 }));
    expect(typo.code).toBe('ERR_POLICY_ERROR');
    expect(typo.message).toBe('Policy "cap" could not be evaluated on this request: No such key: max_token at line 1, column 14');
    expect(typo.details).toEqual({ rule: 'cap', action: 'deny', connection: 'llm' });
    // No body at all (a GET) is no excuse either.
    expect(refusal([{ name: 'cap', when: 'request.json.max_tokens > 1000', action: 'deny' }], body(null), { method: 'GET' }).code).toBe('ERR_POLICY_ERROR');
    // A missing header or label, for a review rule.
    const review = refusal([{ name: 'hold', when: 'request.headers["x-hold"] == "yes"', action: 'review', reviewers: ['ml-leads'] }], body(null));
    expect(review.message).toMatch(/^Policy "hold" could not be evaluated on this request: No such key: x-hold/);
    expect(review.details).toMatchObject({ rule: 'hold', action: 'review' });
    expect(refusal([{ name: 'lab', when: 'connection.labels.zone == "eu"', action: 'deny' }], body(null)).code).toBe('ERR_POLICY_ERROR');
    // The same rules written for optional fields decide.
    const optional = engineOf([
      { name: 'cap', when: 'request.json.?max_tokens.orValue(0) > 1000', action: 'deny' },
      { name: 'hold', when: 'request.headers[?"x-hold"].orValue("") == "yes"', action: 'review', reviewers: ['ml-leads'] },
      { name: 'lab', when: 'has(connection.labels.zone) && connection.labels.zone == "eu"', action: 'deny' },
    ]);
    expect(optional.evaluate(subject(), body({ model: 'gpt-5', max_tokens: 100000 }))).toMatchObject({ action: 'deny', rule: 'cap' });
    expect(optional.evaluate(subject({ method: 'GET' }), body(null))).toEqual({ action: 'allow' });
    expect(optional.evaluate(subject({ headers: { 'x-hold': 'yes' } }), body({}))).toMatchObject({ action: 'review', rule: 'hold' });
  });

  it('never lets an allow rule that fails allow: it does not match, and later rules and the default decide', () => {
    const strict = engineOf(
      [
        { name: 'demo-ok', when: 'request.json.model == "demo"', action: 'allow' },
        { name: 'odd', when: 'request.json.model', action: 'allow' },
        { name: 'no-gpt5', when: 'has(request.json.model) && request.json.model == "gpt-5"', action: 'deny' },
      ],
      { policy_default: 'deny' },
    );
    expect(strict.evaluate(subject(), body({ model: 'demo' }))).toMatchObject({ action: 'allow', rule: 'demo-ok' });
    // No model: demo-ok fails on the missing field and does not match; the default denies.
    expect(strict.evaluate(subject(), body({ messages: [] }))).toMatchObject({ action: 'deny', reason: 'No policy allows this request (policy_default: deny)' });
    // A rule that gives a string, not a boolean, does not allow either; the deny rule after it still applies.
    expect(strict.evaluate(subject(), body({ model: 'gpt-5' }))).toMatchObject({ action: 'deny', rule: 'no-gpt5' });
  });

  it('sees identity groups and the method', () => {
    const dave = { ...alice, sub: 'dave', groups: ['interns'] };
    expect(engine.evaluate(subject({ principal: dave }), body({ model: 'demo' }))).toMatchObject({ action: 'deny', rule: 'interns-read-only', reason: 'Policy "interns-read-only" denies this request' });
  });

  it('refuses (fail closed) when a rule cannot be evaluated on the request, naming the rule', () => {
    let err: unknown;
    try {
      engine.evaluate(subject(), body({ model: 'demo', max_tokens: 'lots' }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('ERR_POLICY_ERROR');
    expect((err as SluiceError).status).toBe(403);
    expect((err as SluiceError).message).toMatch(/^Policy "max-tokens" could not be evaluated on this request: no such overload/);
  });

  it('exposes connection labels, session reason, query, headers (never credentials), size and now', () => {
    const probe = (when: string) => engineOf([{ name: 'probe', when, action: 'deny' }]).evaluate(subject(), body({ model: 'demo' })).action;
    expect(probe('connection.labels.tier == "prod" && connection.type == "http"')).toBe('deny');
    expect(probe('session.reason == "eval run 42" && session.id == "ses_1"')).toBe('deny');
    expect(probe('request.path == "/v1/chat/completions" && request.query["api-version"] == "2024"')).toBe('deny');
    expect(probe('request.headers["x-team"] == "search"')).toBe('deny');
    expect(probe('"authorization" in request.headers')).toBe('allow');
    expect(probe('request.size == 16')).toBe('deny');
    expect(probe('now.getHours("UTC") == 10 && identity.email.endsWith("@example.com")')).toBe('deny');
    expect(probe('identity.client_id == null && identity.roles.size() == 0')).toBe('deny');
  });

  it('applies policy_default: deny when nothing matches', () => {
    const strict = engineOf([{ name: 'demo-ok', when: 'request.json.model == "demo"', action: 'allow', mask: [] }], { policy_default: 'deny' });
    expect(strict.evaluate(subject(), body({ model: 'demo' }))).toEqual({ action: 'allow', rule: 'demo-ok', mask: undefined });
    expect(strict.evaluate(subject(), body({ model: 'other' }))).toMatchObject({ action: 'deny', reason: 'No policy allows this request (policy_default: deny)' });
  });

  it('decides without the body when no rule needs it for this request, and says which rule does', () => {
    const scoped = engineOf([
      { name: 'head-first', when: 'request.method == "DELETE"', action: 'deny' },
      { name: 'llm-models', when: 'connection.name == "llm" && request.json.model == "gpt-5"', action: 'deny' },
      { name: 'big-or-prod', when: 'request.size > 1000000 || connection.labels.tier == "prod"', action: 'review', reviewers: ['ml-leads'] },
    ]);
    // Another connection, not prod: the body could change nothing.
    expect(scoped.evaluateWithoutBody(subject({ connection: { name: 'files', type: 'http', labels: {} } }))).toMatchObject({ needsBody: true, from: 2 });
    expect(scoped.evaluateWithoutBody(subject({ connection: { name: 'files', type: 'http', labels: { tier: 'prod' } } }))).toMatchObject({ action: 'review', rule: 'big-or-prod' });
    // A head-only rule decides first.
    expect(scoped.evaluateWithoutBody(subject({ method: 'DELETE' }))).toMatchObject({ action: 'deny', rule: 'head-first' });
    // On llm the model rule needs the body; evaluated with it from there, it decides.
    const needed = scoped.evaluateWithoutBody(subject());
    expect(needed).toMatchObject({ needsBody: true, from: 1 });
    if (!('needsBody' in needed)) throw new Error('expected the body to be needed');
    expect(needed.withBody(body({ model: 'gpt-5' }))).toMatchObject({ action: 'deny', rule: 'llm-models' });
    expect(scoped.evaluate(subject(), body({ model: 'gpt-5' }), 1)).toMatchObject({ action: 'deny', rule: 'llm-models' });
    expect(engineOf([{ name: 'x', when: 'connection.name == "other" && request.json.model == "x"', action: 'deny' }]).evaluateWithoutBody(subject())).toEqual({ action: 'allow' });
  });

  it('refuses at load what uses `request` as a map rather than by its fields (a type error)', () => {
    for (const when of ['size(request) == 6', '"json" in request', 'request.exists(k, k == "json")', 'request == {"method": "POST"}', 'request.jsn.model == "x"', 'request.size > "10"']) {
      expect(() => engineOf([{ name: 'r', when, action: 'deny' }]), when).toThrow(/policies\[0\]\.when: /);
    }
  });

  it('never decides without the body what the body could change (CEL edge cases)', () => {
    const tricky = [
      'has(request.json)',
      'has(request.size)',
      'has(request.json.model)',
      '!has(request.json.model)',
      'has(request.json.tools)',
      'request.?json.?model.orValue("none") == "none"',
      'request.?json.?model.hasValue()',
      '!request.?json.?model.hasValue()',
      'request.?json.hasValue()',
      'request[?"json"].hasValue()',
      'request.?size.orValue(0) > 1000',
      'size(dyn(request)) == 6',
      '"json" in dyn(request)',
      'dyn(request).exists(k, k == "json")',
      'dyn(request).all(k, k != "size")',
      'dyn(request).exists(k, dyn(request)[k] == "gpt-5")',
      'dyn(request).exists(k, dyn(request)[k] == "POST")',
      'dyn(request).all(k, dyn(request)[k] != "x")',
      'dyn(request).map(k, k).size() == 6',
      'dyn(request).filter(k, k == "json").size() == 1',
      'dyn(request) == {"method": "POST"}',
      'dyn(request) != {"method": "POST"}',
      'request.json == null',
      'request.json != null',
      'type(request.json) == map',
      'dyn(request).json.model == "gpt-5"',
      '[request].exists(r, has(r.json.model))',
      '[request.json].size() == 1',
      'request.json.model == "gpt-5" ? true : false',
      'connection.name == "llm" ? false : request.json.model == "gpt-5"',
      'connection.name == "llm" || request.json.model == "x"',
      'connection.name == "x" && request.json.model == "x"',
      'request.json.model == "gpt-5" || true',
      'has(request.json.model) || false',
      'string(request.size) == "0"',
      'request.size == 0',
      'request.json.exists(k, k == "model")',
      'optional.of(request.json).hasValue()',
      'request.?json.?tools.hasValue() || request.method == "GET"',
      '{"a": request.json}.size() == 1',
      '[1].exists(x, has(request.json.model))',
      'has(request.json.model) == false',
      'request.?json.hasValue() && request.?json.value() == null',
      'dyn(request) == {"method": "POST", "path": "/v1/chat/completions", "query": {"x": "1"}, "headers": {"content-type": "application/json", "x-team": "search"}, "json": null, "size": 0}',
      'dyn(request) != {"method": "POST", "path": "/v1/chat/completions", "query": {"x": "1"}, "headers": {"content-type": "application/json", "x-team": "search"}, "json": null, "size": 0}',
      'dyn(request).exists_one(k, k == "json")',
      'dyn(request).exists_one(k, dyn(request)[k] == "POST")',
      'dyn(request).all(k, k == "json" || dyn(request)[k] != null)',
      'dyn(request).exists(k, k != "method" && dyn(request)[k] == "POST")',
      '[request.json, 1].exists(x, x == 1)',
      '[1, request.json].exists(x, x == 1)',
      '1 in [request.json, 1]',
      'request.headers.exists(k, k == "x-team") || request.json.model == "x"',
      '!(request.json.model == "x") || connection.name == "llm"',
      'request.json.model.startsWith("gpt") && false',
      '(request.json.model == "gpt-5") == (connection.name == "x")',
      '[request.json.model == "gpt-5", true].exists(x, x)',
      '[request.json.model == "gpt-5", true].all(x, x)',
      'dyn(request).map(k, k == "json").exists(x, x)',
      '[request].map(r, r.method).exists(x, x == "POST")',
      'request.size > 1 || request.size <= 1',
      'request.json == request.json',
      'size(request.json) >= 0 || true',
      'request.?json.orValue(null) == null || true',
      'int(request.size) > 5 || connection.name == "llm"',
    ];
    const bodies = [
      body(null),
      { json: { model: 'gpt-5', tools: [1] }, size: 30 },
      { json: { model: 'demo' }, size: 2_000_000 },
      { json: [], size: 2 },
      { json: 'str', size: 5 },
      { json: 5, size: 1 },
      { json: { model: 'GET' }, size: 10 },
      { json: {}, size: 2 },
      { json: { json: 1 }, size: 3 },
    ];
    const outcome = (run: () => unknown): string => {
      try {
        return JSON.stringify(run());
      } catch (err) {
        return `throws ${(err as SluiceError).code ?? 'error'}`;
      }
    };
    for (const when of tricky) {
      const rules = engineOf([{ name: 'r', when, action: 'deny' }]);
      const early = outcome(() => rules.evaluateWithoutBody(subject()));
      if (early.includes('needsBody')) continue;
      for (const b of bodies) expect(outcome(() => rules.evaluate(subject(), b)), `${when} with ${JSON.stringify(b.json)}`).toBe(early);
    }
  });

  it('knows whether any rule reads the body, so bodies are read ahead only then', () => {
    expect(engine.readsBody).toBe(true);
    expect(engineOf([{ name: 'head-only', when: 'request.method == "DELETE" || request.headers["x-a"] == "1" || request.path.startsWith("/admin")', action: 'deny' }]).readsBody).toBe(false);
    expect(engineOf([{ name: 'size', when: 'request.size > 10', action: 'deny' }]).readsBody).toBe(true);
    expect(engineOf([]).readsBody).toBe(false);
  });

  it('uses the default timeout for review rules without one', () => {
    const e = engineOf([{ name: 'r', when: 'true', action: 'review', reviewers: ['ml-leads'] }]);
    expect(e.evaluate(subject(), body(null))).toMatchObject({ action: 'review', timeoutMs: 60_000, minApprovals: 1 });
  });
});
