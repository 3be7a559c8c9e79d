/**
 * Quotas: a caller over `requests_per_minute` is refused with 429 ERR_QUOTA_EXCEEDED and Retry-After until
 * the window turns (the gateway's clock moved, not waited for); a token budget is used up by the usage of
 * streamed answers; counts survive a restart; two replicas on one PostgreSQL share them exactly; calls in
 * flight are bounded by `concurrent_streams`, across replicas; a gRPC caller is refused RESOURCE_EXHAUSTED.
 */
import * as grpc from '@grpc/grpc-js';
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished } from 'vitest';
import { gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';
import { openTunnelPort, testKserveClient, tritonConnection } from '../helpers/grpc-tunnel.js';
import { inferRequest, startKserveModel, unary } from '../helpers/kserve-model.js';
import { postgresFixture } from '../helpers/postgres.js';
import { startTestUpstream, type TestUpstream } from '../helpers/upstream.js';

const postgres = postgresFixture();
const gateways = gatewayFixture();

const MESSAGES = [{ role: 'user' as const, content: 'How many tokens is this?' }];

/** Moves the gateways' clocks to just past the start of a minute, so a test's calls all fall in one window. */
function startOfMinute(...gws: TestGateway[]): void {
  const shift = 61_000 - (Date.now() % 60_000);
  for (const gw of gws) gw.clock.advance(shift);
}

async function call(gw: TestGateway, token: string, body: object = { model: 'demo-small', messages: MESSAGES }): Promise<Response> {
  return fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

describe('quotas', () => {
  it('refuses a caller over requests_per_minute with 429 and Retry-After until the minute turns; other callers keep theirs', async () => {
    const gw = await gateways.start({ config: { quotas: [{ name: 'agents', groups: ['ml-eng'], requests_per_minute: 3 }] } });
    startOfMinute(gw);
    const alice = await gw.token('alice');
    for (let i = 0; i < 3; i++) expect((await call(gw, alice)).status).toBe(200);

    const refused = await call(gw, alice);
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(await refused.json()).toMatchObject({ error: { code: 'ERR_QUOTA_EXCEEDED', quota: 'agents', limit: 'requests_per_minute', retry_after: retryAfter } });
    expect(gw.model.requests).toHaveLength(3);

    // the SDK sees a rate limit it understands
    const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: alice, maxRetries: 0 });
    await expect(sdk.chat.completions.create({ model: 'demo-small', messages: MESSAGES })).rejects.toMatchObject({ status: 429, code: 'ERR_QUOTA_EXCEEDED' });

    // counted per user: bob has his own three
    expect((await call(gw, await gw.token('bob', { groups: ['ml-eng'] }))).status).toBe(200);

    gw.clock.advance(retryAfter * 1000);
    expect((await call(gw, await gw.token('alice'))).status).toBe(200);
    expect(gw.model.requests).toHaveLength(5);
  });

  it('uses a token budget up with the usage of streamed answers, counted once each answer ended', async () => {
    const gw = await gateways.start({ config: { quotas: [{ name: 'budget', users: ['alice'], models: ['demo-small'], tokens_per_day: 50 }] } });
    const alice = await gw.token('alice');
    const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: alice, maxRetries: 0 });
    let used = 0;
    let refusal: unknown;
    for (let i = 0; i < 10 && refusal === undefined; i++) {
      try {
        const stream = await sdk.chat.completions.create({ model: 'demo-small', messages: MESSAGES, stream: true, stream_options: { include_usage: true } });
        for await (const chunk of stream) used += chunk.usage?.total_tokens ?? 0;
      } catch (err) {
        refusal = err;
      }
    }
    // refused only once the answers' usage reached the budget, and at once after
    expect(used).toBeGreaterThanOrEqual(50);
    expect(refusal).toMatchObject({ status: 429, code: 'ERR_QUOTA_EXCEEDED' });
    const refused = await call(gw, alice, { model: 'demo-small', messages: MESSAGES, stream: true });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(24 * 3600);
    expect(await refused.json()).toMatchObject({ error: { quota: 'budget', limit: 'tokens_per_day' } });
    // the rule names one model: another is not counted against it
    expect((await call(gw, alice, { model: 'demo-large', messages: MESSAGES })).status).toBe(200);
  });

  it('keeps counts across a restart of the gateway', async () => {
    const gw = await gateways.start({ config: { quotas: [{ name: 'agents', requests_per_minute: 2 }] } });
    startOfMinute(gw);
    const alice = await gw.token('alice');
    expect((await call(gw, alice)).status).toBe(200);
    expect((await call(gw, alice)).status).toBe(200);
    await gw.stopApp();
    await gw.startApp();
    expect((await call(gw, alice)).status).toBe(429);
  });

  it('holds exactly across two replicas on one PostgreSQL, calls racing at the limit', async () => {
    const database = await postgres.database();
    const quotas = [{ name: 'agents', per: 'group', groups: ['ml-eng'], requests_per_minute: 4 }];
    const a = await gateways.start({ config: { quotas, storage: { database }, replica: { id: 'a/0' } } });
    const b = await gateways.start({ config: { quotas, storage: { database, master_key: a.masterKey }, replica: { id: 'b/0' } } });
    startOfMinute(a, b);
    const alice = await a.token('alice');
    const statuses = await Promise.all(Array.from({ length: 10 }, (_, i) => call(i % 2 === 0 ? a : b, alice).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(4);
    expect(statuses.filter((s) => s === 429)).toHaveLength(6);
    // counted per group: another member of ml-eng shares what is left, on either replica
    expect((await call(b, await b.token('bob', { groups: ['ml-eng'] }))).status).toBe(429);
  });

  describe('concurrent_streams', () => {
    /** A streamed completion whose first chunk arrived: the call is in flight until the upstream is released. */
    async function openStream(gw: TestGateway, token: string): Promise<{ rest(): Promise<void> }> {
      const res = await call(gw, token, { model: 'demo', messages: MESSAGES, stream: true });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      await reader.read();
      return {
        async rest() {
          while (!(await reader.read()).done);
        },
      };
    }

    /** A slot is given back once the store hears of the answer's end, a moment after the caller has it. */
    async function statusOnceFree(gw: TestGateway, user: 'alice' | 'bob'): Promise<number> {
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        status = (await call(gw, await gw.token(user, user === 'bob' ? { groups: ['ml-eng'] } : {}), { model: 'demo', messages: MESSAGES })).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 50));
      }
      return status;
    }

    async function heldUpstream(): Promise<TestUpstream> {
      const upstream = await startTestUpstream();
      onTestFinished(() => upstream.close());
      upstream.holdStreams();
      return upstream;
    }

    it('refuses a call past the calls in flight with 429 and Retry-After: 1, plain calls alike; frees a slot as an answer ends', async () => {
      const upstream = await heldUpstream();
      const gw = await gateways.start({ connections: () => [modelConnection(upstream)], config: { quotas: [{ name: 'streams', concurrent_streams: 2 }] } });
      const alice = await gw.token('alice');
      const streams = [await openStream(gw, alice), await openStream(gw, alice)];

      const refused = await call(gw, alice, { model: 'demo', messages: MESSAGES, stream: true });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(await refused.json()).toMatchObject({ error: { code: 'ERR_QUOTA_EXCEEDED', quota: 'streams', limit: 'concurrent_streams', retry_after: 1 } });
      // a plain call is a call in flight too
      expect((await call(gw, alice, { model: 'demo', messages: MESSAGES })).status).toBe(429);
      // counted per user: bob has his own two
      expect((await call(gw, await gw.token('bob', { groups: ['ml-eng'] }), { model: 'demo', messages: MESSAGES })).status).toBe(200);
      expect(upstream.requests).toHaveLength(3);

      upstream.release();
      for (const s of streams) await s.rest();
      // the slots are given back as the answers end; plain calls that end give theirs back too
      expect(await statusOnceFree(gw, 'alice')).toBe(200);
      for (let i = 0; i < 4; i++) expect((await call(gw, alice, { model: 'demo', messages: MESSAGES })).status).toBe(200);
    });

    it('holds across two replicas on one PostgreSQL: a stream on one takes the place a call on the other wanted', async () => {
      const upstream = await heldUpstream();
      const database = await postgres.database();
      const quotas = [{ name: 'one-at-a-time', per: 'connection', concurrent_streams: 1 }];
      const connections = () => [modelConnection(upstream)];
      const a = await gateways.start({ connections, config: { quotas, storage: { database }, replica: { id: 'a/0' } } });
      const b = await gateways.start({ connections, config: { quotas, storage: { database, master_key: a.masterKey }, replica: { id: 'b/0' } } });
      const stream = await openStream(a, await a.token('alice'));
      const refused = await call(b, await b.token('bob', { groups: ['ml-eng'] }), { model: 'demo', messages: MESSAGES });
      expect(refused.status).toBe(429);
      expect(await refused.json()).toMatchObject({ error: { quota: 'one-at-a-time', limit: 'concurrent_streams' } });
      upstream.release();
      await stream.rest();
      expect(await statusOnceFree(b, 'bob')).toBe(200);
    });
  });

  it('lets a policy read the caller\'s usage: `usage.tokens_today > 1000` denies once the answers\' usage passed it, for that caller only', async () => {
    const gw = await gateways.start({
      config: {
        policies: [
          { name: 'daily-tokens', when: 'usage.tokens_today > 1000', action: 'deny', message: 'Over 1000 tokens today' },
          { name: 'busy-minute', when: 'usage.requests_per_minute >= 50 || usage.tokens_this_month < 0 || usage.input_tokens_today < 0 || usage.output_tokens_today < 0', action: 'deny' },
        ],
      },
    });
    startOfMinute(gw);
    const alice = await gw.token('alice');
    const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: alice, maxRetries: 0 });
    const long = [{ role: 'user' as const, content: 'word '.repeat(1200) }];
    const first = await sdk.chat.completions.create({ model: 'demo-small', messages: long });
    expect(first.usage!.total_tokens).toBeGreaterThan(1000);
    // the usage is counted once the answer ended; the next call sees it
    let denied: Response | undefined;
    for (let i = 0; i < 40 && denied === undefined; i++) {
      const res = await call(gw, alice);
      if (res.status === 403) denied = res;
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(denied?.status).toBe(403);
    expect(await denied!.json()).toMatchObject({ error: { code: 'ERR_POLICY_DENIED', message: 'Over 1000 tokens today' } });
    // bob's usage is his own
    expect((await call(gw, await gw.token('bob', { groups: ['ml-eng'] }))).status).toBe(200);
    // a new day counts from zero
    gw.clock.advance(24 * 3600 * 1000);
    expect((await call(gw, await gw.token('alice'))).status).toBe(200);
  });

  it('refuses a gRPC call over a quota with RESOURCE_EXHAUSTED and the quota\'s message', async () => {
    const model = await startKserveModel();
    onTestFinished(() => model.close());
    const gw = await gateways.start({
      connections: () => [tritonConnection(model)],
      config: { quotas: [{ name: 'infer', connections: ['triton'], requests_per_minute: 1 }] },
    });
    startOfMinute(gw);
    const client = testKserveClient((await openTunnelPort(gw)).address);
    expect(await unary(client, 'ModelInfer', inferRequest('llama', 'first'))).toMatchObject({ ok: true });
    const refused = await unary(client, 'ModelInfer', inferRequest('llama', 'second'));
    expect(refused).toMatchObject({ ok: false, code: grpc.status.RESOURCE_EXHAUSTED });
    expect((refused as { details: string }).details).toMatch(/^Quota "infer" allows 1 requests per minute, and it is used up; retry after \d+ s$/);
  });
});
