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
    { name: 'models-allow-list', when: `!(request.json.model in ${ALLOWED_MODELS})`, action: 'deny', message: 'Only demo and gpt-4o-mini may be used here' },
    { name: 'max-tokens', when: 'request.json.max_tokens > 4096', action: 'deny', message: 'max_tokens is limited to 4096' },
    { name: 'big-needs-review', when: 'request.json.max_tokens > 1000', action: 'review', reviewers: ['ml-leads'], timeout: '5m', min_approvals: 2, message: 'large completion' },
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

  it('allows by default when nothing matches, and a missing field does not match', () => {
    expect(engine.evaluate(subject(), body({ model: 'demo', max_tokens: 100 }))).toEqual({ action: 'allow' });
    // No max_tokens at all: the max_tokens rules do not match (as has() would say), the model rule decides.
    expect(engine.evaluate(subject(), body({ model: 'demo' }))).toEqual({ action: 'allow' });
    // A GET has no JSON body: `request.json.model` is missing, so the allow list does not apply.
    expect(engine.evaluate(subject({ method: 'GET', path: '/v1/models' }), body(null))).toEqual({ action: 'allow' });
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
      'size(request) == 6',
      '"json" in request',
      'request.exists(k, k == "json")',
      'request.all(k, k != "size")',
      'request.exists(k, request[k] == "gpt-5")',
      'request.exists(k, request[k] == "POST")',
      'request.all(k, request[k] != "x")',
      'request.map(k, k).size() == 6',
      'request.filter(k, k == "json").size() == 1',
      'request == {"method": "POST"}',
      'request != {"method": "POST"}',
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
      'request == {"method": "POST", "path": "/v1/chat/completions", "query": {"x": "1"}, "headers": {"content-type": "application/json", "x-team": "search"}, "json": null, "size": 0}',
      'request != {"method": "POST", "path": "/v1/chat/completions", "query": {"x": "1"}, "headers": {"content-type": "application/json", "x-team": "search"}, "json": null, "size": 0}',
      'request.exists_one(k, k == "json")',
      'request.exists_one(k, request[k] == "POST")',
      'request.all(k, k == "json" || request[k] != null)',
      'request.exists(k, k != "method" && request[k] == "POST")',
      '[request.json, 1].exists(x, x == 1)',
      '[1, request.json].exists(x, x == 1)',
      '1 in [request.json, 1]',
      'request.headers.exists(k, k == "x-team") || request.json.model == "x"',
      '!(request.json.model == "x") || connection.name == "llm"',
      'request.json.model.startsWith("gpt") && false',
      '(request.json.model == "gpt-5") == (connection.name == "x")',
      '[request.json.model == "gpt-5", true].exists(x, x)',
      '[request.json.model == "gpt-5", true].all(x, x)',
      'request.map(k, k == "json").exists(x, x)',
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
