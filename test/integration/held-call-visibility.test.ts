import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { runCliInProcess, type InProcessResult } from '../helpers/cli-in-process.js';
import { TunnelClient, type TunnelEvent } from '../../cli/tunnel/tunnel-client.js';
import { connectionListSchema, type ConnectionJson } from '../../shared/connections-api.js';
import { pendingReviewAnswerSchema, reviewSchema, type ReviewJson } from '../../shared/reviews-api.js';
import { gatewayFixture, httpOver, type TestGateway } from '../helpers/gateway.js';
import { createApprovalService } from '../../server/approval/approval-service.js';
import { createHeldRequests, type SessionNotice } from '../../server/approval/held-requests.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { Principal } from '../../server/identity/principal.js';

const gateways = gatewayFixture();

let gw: TestGateway;
const tokens: Record<string, string> = {};

const POLICIES = [
  { name: 'ops-bypass', when: '"ops" in identity.groups', action: 'allow' },
  {
    name: 'other-connection-review',
    when: 'connection.name == "other" && request.json.?model.orValue("") == "x"',
    action: 'review',
    reviewers: ['ml-leads'],
  },
  // Before the rules that read the body: it holds a request whatever its body, so a long one reaches review.
  { name: 'header-review', when: 'request.headers[?"x-review-me"].orValue("") == "yes"', action: 'review', reviewers: ['ml-leads'], min_approvals: 2 },
  {
    name: 'frontier-models-need-review',
    description: 'Frontier models cost a lot: a lead looks first',
    when: 'connection.name == "llm" && request.json.?model.orValue("").startsWith("gpt-5")',
    action: 'review',
    reviewers: ['ml-leads'],
    message: 'Check the eval plan',
  },
  { name: 'quick-review', when: 'request.json.?model.orValue("") == "quick"', action: 'review', reviewers: ['ml-leads'], timeout: '300ms' },
  { name: 'streams-need-review', when: 'connection.type == "tcp" && connection.name == "sink"', action: 'review', reviewers: ['ml-leads'] },
  { name: 'no-deletes', when: 'request.method == "DELETE"', action: 'deny', message: 'Nothing is deleted through the gateway' },
  { name: 'interns-read-only', when: '"interns" in identity.groups', action: 'deny', message: 'Interns use the demo connection' },
];

beforeAll(async () => {
  gw = await gateways.start({
    config: { policies: POLICIES, policy_read_ahead: 4096, approval: { resend_window: '1m', max_held_per_user: 20 } },
  });
  tokens.alice = await gw.token('alice');
  tokens.bob = await gw.token('bob');
  tokens.carol = await gw.token('carol');
  tokens.erin = await gw.token('bob', { sub: 'erin', email: 'erin@example.com' });
  // mallory is in alice's group: she may use the connection, never alice's approvals.
  tokens.mallory = await gw.token('alice', { sub: 'mallory', email: 'mallory@example.com' });
  tokens.pat = await gw.token('alice', { sub: 'pat', email: 'pat@example.com', groups: ['ml-eng', 'platform'] });
  tokens.oscar = await gw.token('alice', { sub: 'oscar', email: 'oscar@example.com', groups: ['ml-eng', 'ops'] });
  tokens.ian = await gw.token('alice', { sub: 'ian', email: 'ian@example.com', groups: ['ml-eng', 'interns'] });
});

async function api<T = unknown>(user: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${tokens[user]}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** A chat completion through the direct proxy, as a notebook's HTTP client sends it. */
function chat(user: string, payload: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens[user]}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(payload),
  });
}

const ASYNC = { prefer: 'respond-async' };

async function answeredAtOnce(res: Response): Promise<string> {
  expect(res.status).toBe(202);
  const body = pendingReviewAnswerSchema.parse(await res.json());
  return body.review.id;
}

/** The recorded events of a session, as an auditor reads them. */
async function sessionEvents(sessionId: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${gw.url}/v1/sessions/${sessionId}/events`, { headers: { authorization: `Bearer ${tokens.carol}` } });
  expect(res.status).toBe(200);
  return (await res.text())
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function sluice(user: string, args: string[]): Promise<InProcessResult> {
  return runCliInProcess(args, { SLUICE_TOKEN: tokens[user]!, SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: join(tmpdir(), 'sluice-held-visibility-none') });
}

/**
 * A tunnel as `sluice connect` opens it, collecting the gateway's notices, and a `send` of one gpt-5 chat
 * carrying `content` with the preference to be answered at once.
 */
async function asyncChatTunnel(gateway: string, token: string, content: string) {
  const client = new TunnelClient({ gateway, connection: 'llm', getToken: async () => ({ token }) });
  const notices: string[] = [];
  client.on('event', (e: TunnelEvent) => {
    if (e.kind === 'notice') notices.push(e.message);
  });
  await client.start();
  onTestFinished(() => client.close());
  const body = JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content }] });
  const send = async () =>
    httpOver(await client.openStream({}).then((s) => () => s), {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...ASYNC },
      body,
    });
  return { notices, send };
}

describe('the rules that apply to the caller, listed before any call', () => {
  async function llmFor(user: string): Promise<ConnectionJson> {
    const { status, body } = await api(user, 'GET', '/v1/connections');
    expect(status).toBe(200);
    const llm = connectionListSchema.parse(body).connections.find((c) => c.name === 'llm');
    expect(llm).toBeDefined();
    return llm!;
  }

  it('names the review and deny rules a caller may meet on a connection, with what they say, never their condition', async () => {
    const llm = await llmFor('alice');
    expect(llm.applies).toMatchObject({ max_body: 32 * 1024 * 1024, policy_read_ahead: 4096, requires_grant: false, policy_default: 'allow' });
    expect(llm.rules.map((r) => r.name)).toEqual(['header-review', 'frontier-models-need-review', 'quick-review', 'no-deletes']);
    expect(llm.rules[1]).toEqual({
      name: 'frontier-models-need-review',
      action: 'review',
      description: 'Frontier models cost a lot: a lead looks first',
      message: 'Check the eval plan',
      matches: 'some',
      reviewers: ['ml-leads'],
      min_approvals: 1,
      timeout: '10m',
    });
    expect(llm.rules[0]).toMatchObject({ name: 'header-review', min_approvals: 2 });
    expect(llm.rules[3]).toMatchObject({ name: 'no-deletes', action: 'deny', message: 'Nothing is deleted through the gateway', reviewers: null, timeout: null });
    expect(JSON.stringify(llm)).not.toContain('request.json');
  });

  it('judges a tcp connection\'s rules against its one kind of request, where a review refuses', async () => {
    const { body } = await api('alice', 'GET', '/v1/connections');
    const echo = connectionListSchema.parse(body).connections.find((c) => c.name === 'echo')!;
    expect(echo.applies).toMatchObject({ max_body: null, policy_read_ahead: null });
    // A stream is a CONNECT without headers or body: rules about methods, headers and bodies cannot match it.
    expect(echo.rules).toEqual([]);
    const sink = connectionListSchema.parse(body).connections.find((c) => c.name === 'sink')!;
    expect(sink.rules).toEqual([
      {
        name: 'streams-need-review',
        action: 'deny',
        description: null,
        message: 'Policy "streams-need-review" requires a review, which tcp connection "sink" cannot wait for',
        matches: 'always',
        reviewers: null,
        min_approvals: null,
        timeout: null,
      },
    ]);
  });

  it('shows each rule\'s CEL source to admins only', async () => {
    const llm = await llmFor('pat');
    expect(llm.rules[1]?.when).toBe(POLICIES[3]!.when);
    expect(llm.rules.every((r) => typeof r.when === 'string')).toBe(true);
  });

  it('leaves out what cannot match the caller, and says when a rule decides every request', async () => {
    // An allow rule that matches every request of oscar's decides them all: nothing after it applies.
    expect((await llmFor('oscar')).rules).toEqual([]);
    const ian = (await llmFor('ian')).rules;
    expect(ian.map((r) => [r.name, r.matches])).toEqual([
      ['header-review', 'some'],
      ['frontier-models-need-review', 'some'],
      ['quick-review', 'some'],
      ['no-deletes', 'some'],
      ['interns-read-only', 'always'],
    ]);
    // The policy that lists it also applies it.
    const res = await chat('ian', { model: 'demo', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { rule: string } }).error.rule).toBe('interns-read-only');
  });

  it('`sluice connections` prints them, and `--json` the API\'s answer', async () => {
    const text = await sluice('alice', ['connections']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^llm: request bodies up to 32 MiB; rules read up to 4\.0 KiB of a body; no access grant needed$/m);
    expect(text.stdout).toMatch(/^ {2}holds {3}frontier-models-need-review {2}some requests · reviewers ml-leads · held up to 10m$/m);
    expect(text.stdout).toContain('Frontier models cost a lot: a lead looks first');
    expect(text.stdout).toContain('reviewers read: Check the eval plan');
    expect(text.stdout).toMatch(/^ {2}denies {2}no-deletes +some requests$/m);
    expect(text.stdout).toContain('you read: Nothing is deleted through the gateway');
    expect(text.stdout).not.toContain('when:');
    const admin = await sluice('pat', ['connections']);
    expect(admin.stdout).toContain(`when: ${POLICIES[3]!.when}`);
    const json = await sluice('alice', ['connections', '--json']);
    expect(json.code).toBe(0);
    const listed = connectionListSchema.parse(JSON.parse(json.stdout));
    expect(listed.connections.find((c) => c.name === 'llm')?.rules.map((r) => r.name)).toContain('frontier-models-need-review');
  });
});

describe('a call that needs review, answered at once (Prefer: respond-async)', () => {
  it('answers 202 with the pending review instead of holding, forwards nothing, and the requester polls it', async () => {
    const before = gw.model.requests.length;
    const res = await chat('alice', { model: 'gpt-5', messages: [{ role: 'user', content: 'answer me at once' }] }, ASYNC);
    expect(res.status).toBe(202);
    expect(res.headers.get('preference-applied')).toBe('respond-async');
    const answer = pendingReviewAnswerSchema.parse(await res.json());
    expect(answer.review).toMatchObject({ status: 'pending', rule: 'frontier-models-need-review', reviewers: ['ml-leads'], resend_window: '1m' });
    expect(answer.review.poll).toBe(`/v1/reviews/${answer.review.id}`);
    expect(res.headers.get('location')).toBe(answer.review.poll);
    expect(Date.parse(answer.review.expires_at)).toBeGreaterThan(Date.now());
    expect(gw.model.requests.length).toBe(before);

    // The requester, who is no reviewer, reads her own review.
    const polled = await api<ReviewJson>('alice', 'GET', answer.review.poll);
    expect(polled.status).toBe(200);
    expect(reviewSchema.parse(polled.body)).toMatchObject({ status: 'pending', requester: { sub: 'alice' }, resend: { until: null, resent_at: null } });
    // Nobody else outside the reviewers does.
    expect((await api('mallory', 'GET', answer.review.poll)).status).toBe(404);
    // Asking again while it is pending does not ask the reviewers twice.
    const again = await chat('alice', { model: 'gpt-5', messages: [{ role: 'user', content: 'answer me at once' }] }, ASYNC);
    expect(await answeredAtOnce(again)).toBe(answer.review.id);
    await api('bob', 'POST', `/v1/reviews/${answer.review.id}/reject`, { reason: 'cleanup' });
  });

  it('?wait= long-polls until the decision; the requester may not approve her own', async () => {
    const id = await answeredAtOnce(await chat('alice', { model: 'gpt-5', messages: [{ role: 'user', content: 'long poll' }] }, ASYNC));
    const waiting = api<ReviewJson>('alice', 'GET', `/v1/reviews/${id}?wait=20s`);
    let settled = false;
    void waiting.then(() => (settled = true));
    const self = await api<{ error: { code: string } }>('alice', 'POST', `/v1/reviews/${id}/approve`, {});
    expect(self.status).toBe(403);
    expect(self.body.error.code).toBe('ERR_SELF_APPROVAL');
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    expect((await api('bob', 'POST', `/v1/reviews/${id}/approve`, { reason: 'go' })).status).toBe(200);
    const decided = await waiting;
    expect(decided.status).toBe(200);
    expect(decided.body).toMatchObject({ status: 'approved', resolved_by: { sub: 'bob' } });
    expect(Date.parse(decided.body.resend!.until!)).toBeGreaterThan(Date.now());
    expect((await api('alice', 'GET', `/v1/reviews/${id}?wait=2m`)).status).toBe(400);
  });

  it('shows a review nobody decided in time as expired', async () => {
    const id = await answeredAtOnce(await chat('alice', { model: 'quick', messages: [{ role: 'user', content: 'quick' }] }, ASYNC));
    const polled = await api<ReviewJson>('alice', 'GET', `/v1/reviews/${id}?wait=10s`);
    expect(polled.body.status).toBe('expired');
    // An expired review lets nothing through: the same request is a new review.
    const again = await answeredAtOnce(await chat('alice', { model: 'quick', messages: [{ role: 'user', content: 'quick' }] }, ASYNC));
    expect(again).not.toBe(id);
  });

  it('forwards the same request sent again by the requester once, after approval, recorded like any exchange', async () => {
    const payload = { model: 'gpt-5', messages: [{ role: 'user', content: 'the approved prompt' }] };
    const first = await chat('alice', payload, ASYNC);
    const id = await answeredAtOnce(first);
    const sessionId = first.headers.get('x-sluice-session')!;
    expect((await api('bob', 'POST', `/v1/reviews/${id}/approve`, { reason: 'fine' })).status).toBe(200);
    const before = gw.model.requests.length;

    // Another body, or another caller with the same body, is another request: a review of its own, nothing forwarded.
    const changed = await chat('alice', { ...payload, messages: [{ role: 'user', content: 'a different prompt' }] }, ASYNC);
    expect(await answeredAtOnce(changed)).not.toBe(id);
    const otherCaller = await chat('mallory', payload, ASYNC);
    expect(await answeredAtOnce(otherCaller)).not.toBe(id);
    const otherPath = await fetch(`${gw.url}/v1/proxy/llm/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json', ...ASYNC },
      body: JSON.stringify(payload),
    });
    expect(await answeredAtOnce(otherPath)).not.toBe(id);
    // A header that changes what the upstream does (an account, a beta) makes it another request too.
    const otherAccount = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json', 'openai-organization': 'org-other', ...ASYNC },
      body: JSON.stringify(payload),
    });
    expect(await answeredAtOnce(otherAccount)).not.toBe(id);
    expect(gw.model.requests.length).toBe(before);

    // The approved request itself, through the openai SDK as a notebook sends it (the preference still set).
    const client = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: tokens.alice!, maxRetries: 0, defaultHeaders: ASYNC });
    const completion = await client.chat.completions.create(payload as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(completion.choices[0]?.message.content).toContain('the approved prompt');
    expect(gw.model.requests.length).toBe(before + 1);

    const used = await api<ReviewJson>('alice', 'GET', `/v1/reviews/${id}`);
    expect(used.body.resend?.resent_request_id).toMatch(/^req_/);

    // Single use: the same request once more is a new review.
    expect(await answeredAtOnce(await chat('alice', payload, ASYNC))).not.toBe(id);
    expect(gw.model.requests.length).toBe(before + 1);

    // The recording tells it: answered 202 with the review, then the re-send, its approval and the answer.
    await vi.waitFor(async () => {
      const events = await sessionEvents(sessionId);
      const original = events.filter((e) => e.exchange === first.headers.get('x-request-id'));
      expect(original.map((e) => e.type)).toEqual(['review.requested', 'exchange.request', 'exchange.response', 'exchange.end']);
      expect(original.at(-1)).toMatchObject({ status: 202, complete: true });
      const resent = events.filter((e) => e.exchange === used.body.resend?.resent_request_id);
      expect(resent.map((e) => e.type)).toEqual(expect.arrayContaining(['review.approved', 'exchange.request', 'exchange.response', 'exchange.end']));
      expect(resent.find((e) => e.type === 'review.approved')).toMatchObject({ review: id, by: 'bob@example.com', note: expect.stringContaining('sent again') });
      expect(resent.find((e) => e.type === 'exchange.end')).toMatchObject({ status: 200 });
    });
  });

  it('lets exactly one of two simultaneous re-sends use an approval', async () => {
    const payload = { model: 'gpt-5', messages: [{ role: 'user', content: 'race for it' }] };
    const id = await answeredAtOnce(await chat('alice', payload, ASYNC));
    await api('bob', 'POST', `/v1/reviews/${id}/approve`, {});
    const before = gw.model.requests.length;
    const [a, b] = await Promise.all([chat('alice', payload, ASYNC), chat('alice', payload, ASYNC)]);
    expect([a.status, b.status].sort()).toEqual([200, 202]);
    expect(gw.model.requests.length).toBe(before + 1);
  });

  it('needs every approval a rule asks for before a re-send is forwarded', async () => {
    const payload = { model: 'demo', messages: [{ role: 'user', content: 'two leads' }] };
    const headers = { ...ASYNC, 'x-review-me': 'yes' };
    const id = await answeredAtOnce(await chat('alice', payload, headers));
    await api('bob', 'POST', `/v1/reviews/${id}/approve`, {});
    const before = gw.model.requests.length;
    expect(await answeredAtOnce(await chat('alice', payload, headers))).toBe(id);
    await api('erin', 'POST', `/v1/reviews/${id}/approve`, {});
    expect((await chat('alice', payload, headers)).status).toBe(200);
    expect(gw.model.requests.length).toBe(before + 1);
  });

  it('refuses to answer at once a request whose body it cannot bind an approval to', async () => {
    const payload = { model: 'demo', messages: [{ role: 'user', content: 'x'.repeat(8000) }] };
    const res = await chat('alice', payload, { ...ASYNC, 'x-review-me': 'yes' });
    expect(res.status).toBe(413);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('ERR_BODY_TOO_LARGE');
    expect(error.message).toContain('answered at once (Prefer: respond-async)');
  });

  it('tells the requester\'s tunnel of the review, its approval and the re-send', async () => {
    const { notices, send } = await asyncChatTunnel(gw.url, tokens.alice!, 'through the tunnel');
    const first = await send();
    expect(first.status).toBe(202);
    const id = pendingReviewAnswerSchema.parse(JSON.parse(first.body.toString())).review.id;
    await vi.waitFor(() => expect(notices.some((n) => n.startsWith(`waiting for approval ${id} (reviewers: ml-leads)`))).toBe(true));
    await api('bob', 'POST', `/v1/reviews/${id}/approve`, {});
    await vi.waitFor(() => expect(notices.some((n) => n.startsWith(`${id} approved by bob@example.com; send the same request again before `))).toBe(true));
    const second = await send();
    expect(second.status).toBe(200);
    expect(second.body.toString()).toContain('through the tunnel');
    await vi.waitFor(() => expect(notices).toContain(`${id}: the request approved by bob@example.com was sent again; forwarding it`));
  });
});

describe('the deadline of a review answered at once', () => {
  it('tells the requester\'s tunnel how a review decided on another replica ended, though this replica never heard of the decision', async () => {
    const g = await gateways.start({
      config: { policies: [{ name: 'brief-review', when: 'request.json.?model.orValue("") == "gpt-5"', action: 'review', reviewers: ['ml-leads'], timeout: '1s' }] },
    });
    const alice = await g.token('alice');
    const { notices, send } = await asyncChatTunnel(g.url, alice, 'decided elsewhere');
    const first = await send();
    expect(first.status).toBe(202);
    const id = pendingReviewAnswerSchema.parse(JSON.parse(first.body.toString())).review.id;

    // Another replica over the same index, whose announcements never reach this one.
    const elsewhere = new SqliteStore({ file: join(g.config.storage.dir, 'index.sqlite') });
    onTestFinished(() => elsewhere.close());
    const bob: Principal = { sub: 'bob', email: 'bob@example.com', groups: ['ml-leads'], roles: ['reviewer'], expiresAt: Math.floor(Date.now() / 1000) + 600, issuer: g.idp.issuer };
    const outcome = await createApprovalService({ store: elsewhere, limits: () => ({ perUser: 20, total: 100 }) }).approve({ id, principal: bob });
    expect(outcome.review.status).toBe('approved');

    // At the deadline this replica finds the review decided and says so.
    await vi.waitFor(() => expect(notices.some((n) => n.startsWith(`${id} approved by bob@example.com; send the same request again before `))).toBe(true), { timeout: 10_000, interval: 50 });
    const second = await send();
    expect(second.status).toBe(200);
    expect(second.body.toString()).toContain('decided elsewhere');
  });

  it('is kept when expiring the review fails: tried again until it is expired and the requester is told', async () => {
    const store = new SqliteStore({ file: ':memory:' });
    onTestFinished(() => store.close());
    const service = createApprovalService({ store, limits: () => ({ perUser: 20, total: 100 }) });
    let failures = 2;
    const flaky = {
      ...service,
      // The store unreachable for the first tries, as during a database failover.
      expire: async (reviewId: string) => {
        if (failures-- > 0) throw new Error('SQLITE_BUSY: database is locked');
        return service.expire(reviewId);
      },
    };
    const notices: SessionNotice[] = [];
    const held = createHeldRequests({ service: flaky, defaultTimeoutMs: () => 50, notifySession: (_session, n) => void notices.push(n) });
    onTestFinished(() => held.close());
    const principal: Principal = { sub: 'alice', email: 'alice@example.com', groups: ['ml-eng'], roles: [], expiresAt: Math.floor(Date.now() / 1000) + 600, issuer: 'https://idp.test' };
    const review = await held.defer({
      exchange: { id: 'req_1', principal, connection: { name: 'llm' }, session: { id: 'ses_1' } },
      decision: { rule: 'frontier-models-need-review', reviewers: ['ml-leads'] },
      summary: { method: 'POST', path: '/v1/chat/completions', model: 'gpt-5', size: 10 },
      binding: 'b1',
    });

    await vi.waitFor(() => expect(notices.map((n) => n.code)).toContain('ERR_REVIEW_EXPIRED'), { timeout: 10_000, interval: 50 });
    expect(failures).toBeLessThan(0);
    expect((await store.getReview(review.id))?.status).toBe('expired');
    expect(notices.find((n) => n.code === 'ERR_REVIEW_EXPIRED')?.message).toContain(review.id);
  });
});
