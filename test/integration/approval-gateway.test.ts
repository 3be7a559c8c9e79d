import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import OpenAI from 'openai';
import { beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { WebSocket } from 'ws';
import type { ReviewJson } from '../../shared/reviews-api.js';
import { gatewayFixture, modelConnection, refusedUpgrade, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();

let gw: TestGateway;
let gateway: string;
const tokens: Record<string, string> = {};

const POLICIES = [
  { name: 'header-review', when: 'request.headers[?"x-review-me"].orValue("") == "yes"', action: 'review', reviewers: ['ml-leads'], timeout: '10m' },
  {
    name: 'models-allow-list',
    when: 'request.method == "POST" && has(request.json.model) && !(request.json.model in ["demo", "gpt-5", "gpt-5-slow"])',
    action: 'deny',
    message: 'Only the models demo and gpt-5 may be used on this gateway',
  },
  { name: 'max-tokens', when: 'request.json.?max_tokens.orValue(0) > 4096', action: 'deny', message: 'max_tokens is limited to 4096' },
  { name: 'slow-review', when: 'request.json.?model.orValue("") == "gpt-5-slow"', action: 'review', reviewers: ['ml-leads'], timeout: '300ms' },
  {
    name: 'frontier-models-need-review',
    when: 'connection.name == "llm" && has(request.json.model) && request.json.model.startsWith("gpt-5")',
    action: 'review',
    reviewers: ['ml-leads'],
    timeout: '10m',
  },
];

/** The config file as the gateway started from it, with `extraPolicies` first and a fresh master key. */
function rewriteConfig(extraPolicies: unknown[] = []): Promise<void> {
  return gw.writeConfig({ storage: { master_key: randomBytes(32).toString('base64') }, policies: [...extraPolicies, ...POLICIES] });
}

beforeAll(async () => {
  gw = await gateways.start({
    reloadable: true,
    connections: ({ model }) => [
      modelConnection(model),
      modelConnection(model, { name: 'vault', requires_grant: true, grant: { reviewers: ['ml-leads'], max_duration: '8h' } }),
    ],
    config: { approval: { max_held_per_user: 2 }, policies: POLICIES },
  });
  gateway = gw.url;
  for (const user of ['alice', 'bob', 'carol', 'dave'] as const) tokens[user] = await gw.token(user);
  // pat is an admin (group platform); the test IdP has no such user, so the token is made directly.
  tokens.pat = await gw.token('alice', { sub: 'pat', email: 'pat@example.com', groups: ['platform'] });
});

function sdk(user: string, connection = 'llm'): OpenAI {
  return new OpenAI({ baseURL: `${gateway}/v1/proxy/${connection}/v1`, apiKey: tokens[user]!, maxRetries: 0, timeout: 30_000 });
}

async function api<T = unknown>(user: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${gateway}${path}`, {
    method,
    headers: { authorization: `Bearer ${tokens[user]}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** The pending review of alice's call, once the gateway has opened it. */
async function pendingReview(rule = 'frontier-models-need-review'): Promise<ReviewJson> {
  let found: ReviewJson | undefined;
  await vi.waitFor(
    async () => {
      const { body } = await api<{ reviews: ReviewJson[] }>('bob', 'GET', '/v1/reviews?status=pending');
      found = body.reviews.find((r) => r.rule === rule);
      expect(found).toBeDefined();
    },
    { timeout: 10_000, interval: 50 },
  );
  return found!;
}

async function sdkError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.APIError);
  return err as InstanceType<typeof OpenAI.APIError>;
}

describe('deny rules in CEL over the JSON body', () => {
  it('answers a model outside the allow list with the rule\'s message, never calling the upstream', async () => {
    const before = gw.model.requests.length;
    const err = await sdkError(sdk('alice').chat.completions.create({ model: 'gpt-3.5-turbo', messages: [{ role: 'user', content: 'hi' }] }));
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(err.status).toBe(403);
    expect(err.code).toBe('ERR_POLICY_DENIED');
    expect(err.message).toContain('Only the models demo and gpt-5 may be used on this gateway');
    expect((err.error as { rule?: string }).rule).toBe('models-allow-list');
    expect(gw.model.requests.length).toBe(before);
  });

  it('answers max_tokens above the bound with its message', async () => {
    const err = await sdkError(sdk('alice').chat.completions.create({ model: 'demo', max_tokens: 8000, messages: [{ role: 'user', content: 'hi' }] }));
    expect(err.status).toBe(403);
    expect(err.message).toContain('max_tokens is limited to 4096');
  });

  it('lets an allowed call through with the model\'s answer', async () => {
    const completion = await sdk('alice').chat.completions.create({ model: 'demo', max_tokens: 100, messages: [{ role: 'user', content: 'allowed call' }] });
    expect(completion.choices[0]?.message.content).toContain('allowed call');
  });
});

describe('held requests', () => {
  it('holds a matching call until bob approves; alice and carol cannot approve (403 each)', async () => {
    const before = gw.model.requests.length;
    const call = sdk('alice').chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'needs a review' }] });
    const review = await pendingReview();
    expect(review).toMatchObject({
      kind: 'request',
      status: 'pending',
      requester: { sub: 'alice', email: 'alice@example.com' },
      connection: 'llm',
      summary: { method: 'POST', path: '/v1/chat/completions', model: 'gpt-5' },
      reviewers: ['ml-leads'],
    });
    expect(review.id).toMatch(/^r_/);
    // Held, not forwarded.
    expect(gw.model.requests.length).toBe(before);

    const self = await api<{ error: { code: string } }>('alice', 'POST', `/v1/reviews/${review.id}/approve`, {});
    expect(self.status).toBe(403);
    expect(self.body.error.code).toBe('ERR_SELF_APPROVAL');
    const outsider = await api<{ error: { code: string } }>('carol', 'POST', `/v1/reviews/${review.id}/approve`, {});
    expect(outsider.status).toBe(403);
    expect(outsider.body.error.code).toBe('ERR_NOT_REVIEWER');
    const stranger = await api<{ error: { code: string } }>('dave', 'POST', `/v1/reviews/${review.id}/approve`, {});
    expect(stranger.status).toBe(404);

    const approved = await api<{ review: ReviewJson }>('bob', 'POST', `/v1/reviews/${review.id}/approve`, { reason: 'ok for the eval' });
    expect(approved.status).toBe(200);
    expect(approved.body.review).toMatchObject({ status: 'approved', resolved_by: { sub: 'bob' } });
    const completion = await call;
    expect(completion.choices[0]?.message.content).toContain('needs a review');
    expect(gw.model.requests.length).toBe(before + 1);
  });

  it('fails the call with 403 and the reviewer\'s reason when rejected', async () => {
    const call = sdk('alice').chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'rejected' }] });
    const review = await pendingReview();
    const rejected = await api<ReviewJson>('bob', 'POST', `/v1/reviews/${review.id}/reject`, { reason: 'use the demo model for evals' });
    expect(rejected.body.status).toBe('rejected');
    const err = await sdkError(call);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(err.code).toBe('ERR_REVIEW_REJECTED');
    expect(err.message).toContain('rejected by bob@example.com: use the demo model for evals');
  });

  it('fails the call with 403 "review expired" when nobody decides in time', async () => {
    const err = await sdkError(sdk('alice').chat.completions.create({ model: 'gpt-5-slow', messages: [{ role: 'user', content: 'slow' }] }));
    expect(err.status).toBe(403);
    expect(err.code).toBe('ERR_REVIEW_EXPIRED');
    expect(err.message).toContain('review expired');
  });

  it('answers 429 beyond the held requests allowed per user', async () => {
    const first = sdkError(sdk('alice').chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: '1' }] }));
    const second = sdkError(sdk('alice').chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: '2' }] }));
    await vi.waitFor(async () => {
      const { body } = await api<{ reviews: ReviewJson[] }>('bob', 'GET', '/v1/reviews?status=pending');
      expect(body.reviews).toHaveLength(2);
    });
    const err = await sdkError(sdk('alice').chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: '3' }] }));
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.code).toBe('ERR_REVIEW_LIMIT');
    const { body } = await api<{ reviews: ReviewJson[] }>('bob', 'GET', '/v1/reviews?status=pending');
    for (const r of body.reviews) await api('bob', 'POST', `/v1/reviews/${r.id}/reject`, { reason: 'cleanup' });
    expect(await first).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(await second).toBeInstanceOf(OpenAI.PermissionDeniedError);
  });

  it('withdraws the review when the caller disconnects', async () => {
    const body = JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'gone' }] });
    const req = httpRequest(`${gateway}/v1/proxy/llm/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.on('error', () => undefined);
    req.end(body);
    const review = await pendingReview();
    req.destroy();
    await vi.waitFor(async () => {
      const { body: r } = await api<ReviewJson>('bob', 'GET', `/v1/reviews/${review.id}`);
      expect(r).toMatchObject({ status: 'abandoned', resolution: 'the caller left' });
    });
  });

  it('streams new reviews and decisions to watchers (server-sent events)', async () => {
    const ac = new AbortController();
    onTestFinished(() => ac.abort());
    const res = await fetch(`${gateway}/v1/reviews/watch`, { headers: { authorization: `Bearer ${tokens.bob}` }, signal: ac.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    let text = '';
    const reader = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) text += decoder.decode(chunk, { stream: true });
      } catch {
        // aborted at the end of the test
      }
    })();
    const call = sdk('alice').chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'watched' }] });
    const review = await pendingReview();
    await vi.waitFor(() => expect(text).toContain(`event: review.created\ndata: {"type":"review.created"`));
    await api('bob', 'POST', `/v1/reviews/${review.id}/approve`, {});
    await call;
    await vi.waitFor(() => expect(text).toMatch(/event: review\.approved\ndata: .*"status":"approved"/));
    ac.abort();
    await reader;
    // Others' watches never show alice's reviews to someone who may not see them.
    const dave = await fetch(`${gateway}/v1/reviews/watch`, { headers: { authorization: `Bearer ${tokens.dave}` }, signal: AbortSignal.timeout(300) }).then(
      async (r) => {
        let t = '';
        try {
          for await (const chunk of r.body as AsyncIterable<Uint8Array>) t += Buffer.from(chunk).toString();
        } catch {
          // timed out: nothing more came
        }
        return t;
      },
    );
    expect(dave).not.toContain('review.');
  });
});

describe('a review decided without the body', () => {
  it('still shows reviewers the model and size of the held request', async () => {
    const call = new OpenAI({ baseURL: `${gateway}/v1/proxy/llm/v1`, apiKey: tokens.alice!, maxRetries: 0, timeout: 30_000, defaultHeaders: { 'x-review-me': 'yes' } }).chat.completions.create({
      model: 'demo',
      messages: [{ role: 'user', content: 'look at me' }],
    });
    const review = await pendingReview('header-review');
    expect(review.summary).toMatchObject({ method: 'POST', path: '/v1/chat/completions', model: 'demo' });
    expect((review.summary as { size: number }).size).toBeGreaterThan(0);
    await api('bob', 'POST', `/v1/reviews/${review.id}/approve`, {});
    await call;
  });
});

describe('a review watch', () => {
  it('ends when the token it was opened with expires, saying so', async () => {
    const shortLived = await gw.token('bob', { exp: Math.floor(Date.now() / 1000) + 2 });
    const started = Date.now();
    const res = await fetch(`${gateway}/v1/reviews/watch`, { headers: { authorization: `Bearer ${shortLived}` }, signal: AbortSignal.timeout(15_000) });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/event: error\ndata: \{"error":\{"code":"ERR_TOKEN_EXPIRED"/);
    expect(Date.now() - started).toBeGreaterThan(900);
  });

  it('refuses a token already past its expiry (within the clock leeway) with 401, and the gateway carries on', async () => {
    const expired = await gw.token('bob', { exp: Math.floor(Date.now() / 1000) - 5 });
    const res = await fetch(`${gateway}/v1/reviews/watch`, { headers: { authorization: `Bearer ${expired}` }, signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_TOKEN_EXPIRED');
    const { status } = await api('bob', 'GET', '/v1/reviews');
    expect(status).toBe(200);
  });
});

describe('time-boxed grants', () => {
  function tunnelUrl(): string {
    return `${gateway.replace('http', 'ws')}/v1/tunnel?connection=vault`;
  }

  it('refuses tunnels and proxy calls without a grant, opens them after approval, closes the tunnel when it ends', async () => {
    const refused = await refusedUpgrade(tunnelUrl(), { authorization: `Bearer ${tokens.alice}` });
    expect(refused.status).toBe(403);
    expect(refused.body.error?.code).toBe('ERR_GRANT_REQUIRED');
    const viaProxy = await sdkError(sdk('alice', 'vault').models.list());
    expect(viaProxy.code).toBe('ERR_GRANT_REQUIRED');

    const tooLong = await api<{ error: { code: string } }>('alice', 'POST', '/v1/grants', { connection: 'vault', duration: '9h', reason: 'x' });
    expect(tooLong.status).toBe(400);
    const requested = await api<ReviewJson>('alice', 'POST', '/v1/grants', { connection: 'vault', duration: '2s', reason: 'incident 7' });
    expect(requested.status).toBe(201);
    expect(requested.body).toMatchObject({ kind: 'grant', status: 'pending', connection: 'vault', reason: 'incident 7', summary: { duration_ms: 2000 } });
    expect((await api('alice', 'POST', `/v1/reviews/${requested.body.id}/approve`, {})).status).toBe(403);
    const approved = await api<{ grant: { expires_at: string; active: boolean } }>('bob', 'POST', `/v1/reviews/${requested.body.id}/approve`, {});
    expect(approved.body.grant).toMatchObject({ active: true });

    const ws = new WebSocket(tunnelUrl(), { headers: { authorization: `Bearer ${tokens.alice}` } });
    const messages: string[] = [];
    ws.on('message', (data, binary) => {
      if (!binary) messages.push(String(data));
    });
    await once(ws, 'open');
    const models = await sdk('alice', 'vault').models.list();
    expect(models.data.length).toBeGreaterThan(0);
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    expect(code).toBe(4403);
    expect(String(reason)).toBe('ERR_GRANT_EXPIRED');
    expect(messages.some((m) => m.includes('"code":"ERR_GRANT_EXPIRED"'))).toBe(true);

    const { body: list } = await api<{ grants: { active: boolean; connection: string }[] }>('alice', 'GET', '/v1/grants');
    expect(list.grants[0]).toMatchObject({ connection: 'vault', active: false });
    expect((await refusedUpgrade(tunnelUrl(), { authorization: `Bearer ${tokens.alice}` })).body.error?.code).toBe('ERR_GRANT_REQUIRED');
  });
});

describe('reload', () => {
  it('is for admins; an invalid file is refused and the running rules stay; a valid one takes effect', async () => {
    expect((await api('alice', 'POST', '/v1/admin/reload')).status).toBe(403);

    await rewriteConfig([{ name: 'broken', when: 'request.json.model ==', action: 'deny' }]);
    const bad = await api<{ error: { code: string; problems: string[] } }>('pat', 'POST', '/v1/admin/reload');
    expect(bad.body.error.code).toBe('ERR_CONFIG_INVALID');
    expect(bad.body.error.problems).toEqual([expect.stringMatching(/^policies\[0\]\.when: /)]);
    const stillAllowed = await sdk('alice').chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'still fine' }] });
    expect(stillAllowed.choices[0]?.message.content).toContain('still fine');

    await rewriteConfig([{ name: 'freeze', when: 'request.json.model == "demo"', action: 'deny', message: 'demo is frozen' }]);
    const good = await api<{ reloaded: boolean; applied: string[]; restart_required: string[] }>('pat', 'POST', '/v1/admin/reload');
    expect(good.status).toBe(200);
    expect(good.body.applied).toContain('policies');
    // A fresh master key was written, but keys are set up once at start.
    expect(good.body.restart_required).toEqual(['storage']);
    const frozen = await sdkError(sdk('alice').chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'now frozen' }] }));
    expect(frozen.message).toContain('demo is frozen');

    await rewriteConfig();
    expect((await api('pat', 'POST', '/v1/admin/reload')).status).toBe(200);
  });
});
