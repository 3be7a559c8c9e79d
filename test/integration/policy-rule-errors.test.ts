import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../server/identity/principal.js';
import { compilePolicies } from '../../server/policy/policy-engine.js';
import { createRulePolicyStage } from '../../server/policy/rule-policy-stage.js';
import { gatewayFixture, type HttpAnswer, type TestGateway } from '../helpers/gateway.js';
import { openLlmRoutes, type LlmRoute, type LlmRoutes } from '../helpers/llm-routes.js';

const gateways = gatewayFixture();

/**
 * A rule that fails to evaluate must never let through what it was written to stop: a deny or review
 * rule that fails (a typo, a field the request lacks) refuses the request with ERR_POLICY_ERROR, and an
 * allow rule that fails allows nothing.
 */

let gw: TestGateway;
let aliceToken: string;
let routes: LlmRoutes;

beforeAll(async () => {
  gw = await gateways.start({
    config: {
      policies: [
        // A typo: max_token for max_tokens. It passed the load (the body is dyn), and used to allow everything.
        { name: 'cap-typo', when: 'request.path == "/v1/completions" && request.json.max_token > 1000', action: 'deny', message: 'max_tokens is limited to 1000' },
        // The same rule written right, for an optional field.
        { name: 'cap', when: 'request.json.?max_tokens.orValue(0) > 1000', action: 'deny', message: 'max_tokens is limited to 1000' },
        { name: 'hold-flagged', when: 'request.headers["x-hold"] == "yes"', action: 'review', reviewers: ['ml-leads'] },
        { name: 'only-demo', when: 'request.path == "/v1/embeddings" && request.json.model.startsWith("demo")', action: 'allow' },
        { name: 'no-embeddings', when: 'request.path == "/v1/embeddings"', action: 'deny', message: 'embeddings need a demo model' },
      ],
    },
  });
  aliceToken = await gw.token('alice');
  routes = await openLlmRoutes(gw, aliceToken);
});

afterAll(async () => {
  routes?.close();
  await gw?.close();
});

/** POSTs `body` as JSON to `target` of `llm`, through the direct proxy or the tunnel. */
function send(path: LlmRoute, target: string, body: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return routes.post(path, target, Buffer.from(JSON.stringify(body)), headers);
}

async function refused(path: LlmRoute, target: string, body: unknown, headers: Record<string, string> = {}) {
  const before = gw.model.requests.length;
  const answer = await send(path, target, body, headers);
  expect(gw.model.requests.length).toBe(before);
  return { status: answer.status, error: (JSON.parse(answer.body.toString()) as { error: Record<string, unknown> }).error };
}

describe.each<LlmRoute>(['proxy', 'tunnel'])('rules that fail to evaluate (%s)', (path) => {
  it('refuses the request a mistyped deny rule was written to deny, naming the rule and the field', async () => {
    const { status, error } = await refused(path, '/v1/completions', { model: 'demo', prompt: 'hi', max_tokens: 100000 });
    expect(status).toBe(403);
    expect(error).toMatchObject({
      type: 'permission_error',
      code: 'ERR_POLICY_ERROR',
      rule: 'cap-typo',
      action: 'deny',
      connection: 'llm',
      message: 'Policy "cap-typo" could not be evaluated on this request: No such key: max_token at line 1, column 51',
    });
  });

  it('refuses when a review rule fails (a header the request lacks): nothing is held for review', async () => {
    const { status, error } = await refused(path, '/v1/chat/completions', { model: 'demo', messages: [] });
    expect(status).toBe(403);
    expect(error).toMatchObject({ code: 'ERR_POLICY_ERROR', rule: 'hold-flagged', action: 'review' });
    expect(error.message).toMatch(/^Policy "hold-flagged" could not be evaluated on this request: No such key: x-hold/);
    const reviews = await fetch(`${gw.url}/v1/reviews`, { headers: { authorization: `Bearer ${await gw.token('bob')}` } });
    expect(((await reviews.json()) as { reviews: unknown[] }).reviews).toEqual([]);
  });

  it('never allows through an allow rule that fails: the rules after it decide', async () => {
    // No model: only-demo fails and does not match; no-embeddings denies.
    const { status, error } = await refused(path, '/v1/embeddings', { input: 'hi' }, { 'x-hold': 'no' });
    expect(status).toBe(403);
    expect(error).toMatchObject({ code: 'ERR_POLICY_DENIED', rule: 'no-embeddings' });
  });

  it('decides as written for rules over optional fields (has(), `.?`)', async () => {
    const { status, error } = await refused(path, '/v1/chat/completions', { model: 'demo', messages: [], max_tokens: 100000 }, { 'x-hold': 'no' });
    expect(status).toBe(403);
    expect(error).toMatchObject({ code: 'ERR_POLICY_DENIED', rule: 'cap' });
    const before = gw.model.requests.length;
    const ok = await send(path, '/v1/chat/completions', { model: 'demo', messages: [{ role: 'user', content: 'hi' }] }, { 'x-hold': 'no' });
    expect(ok.status).toBe(200);
    expect(gw.model.requests.length).toBe(before + 1);
  });
});

describe('what operators and auditors see of a rule that fails', () => {
  it('the OpenAI SDK gets a 403 permission error naming the rule', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: aliceToken, maxRetries: 0 });
    const err = await client.completions.create({ model: 'demo', prompt: 'hi', max_tokens: 100000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((err as InstanceType<typeof OpenAI.PermissionDeniedError>).code).toBe('ERR_POLICY_ERROR');
    expect((err as Error).message).toContain('Policy "cap-typo"');
  });

  it('the recording holds the decision (deny, by the rule) and the error, and the session counts it as denied', async () => {
    const erin = await gw.token('alice', { sub: 'erin', email: 'erin@example.com' });
    const res = await fetch(`${gw.url}/v1/proxy/llm/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${erin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo', prompt: 'hi', max_tokens: 5 }),
    });
    expect(res.status).toBe(403);
    const carol = `Bearer ${await gw.token('carol')}`;
    type Listing = { sessions: Array<{ id: string; counters: Record<string, number> }> };
    const listing = async (): Promise<Listing> => (await fetch(`${gw.url}/v1/sessions?user=erin`, { headers: { authorization: carol } })).json() as Promise<Listing>;
    let list = await listing();
    // The index takes progress in batches: wait for the batch that carries the refusal.
    for (let i = 0; i < 50 && list.sessions[0]?.counters.denied !== 1; i++) {
      await sleep(100);
      list = await listing();
    }
    expect(list.sessions).toHaveLength(1);
    expect(list.sessions[0]!.counters).toMatchObject({ denied: 1 });
    const events = (await (await fetch(`${gw.url}/v1/sessions/${list.sessions[0]!.id}/events`, { headers: { authorization: carol } })).text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.find((e) => e.type === 'policy.decision')).toMatchObject({ action: 'deny', rule: 'cap-typo', reason: expect.stringContaining('No such key: max_token') });
    expect(events.find((e) => e.type === 'exchange.error')).toMatchObject({ code: 'ERR_POLICY_ERROR' });
  });

  it('each refusal is logged as a warning naming the rule', async () => {
    const warnings: Array<{ fields: Record<string, unknown>; message: string }> = [];
    const engine = compilePolicies({ policies: gw.config.policies });
    const stage = createRulePolicyStage({ engine: () => engine, log: { warn: (fields, message) => warnings.push({ fields, message }) } });
    const principal: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 0, issuer: 'https://idp' };
    const exchange = { principal, connection: { name: 'llm', type: 'http', labels: {} }, session: { id: 'ses_1' }, method: 'POST', path: '/v1/chat/completions', headers: {} };
    await expect(stage.decide(exchange, async () => ({ json: { model: 'demo' }, size: 16 }))).rejects.toMatchObject({ code: 'ERR_POLICY_ERROR' });
    expect(warnings).toEqual([
      {
        fields: expect.objectContaining({ code: 'ERR_POLICY_ERROR', rule: 'hold-flagged', action: 'review', connection: 'llm', error: expect.stringContaining('No such key: x-hold') }),
        message: 'policy rule failed to evaluate; request refused',
      },
    ]);
  });
});
