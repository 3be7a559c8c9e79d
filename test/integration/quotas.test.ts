/**
 * Quotas: a caller over `requests_per_minute` is refused with 429 ERR_QUOTA_EXCEEDED and Retry-After until
 * the window turns (the gateway's clock moved, not waited for); a token budget is used up by the usage of
 * streamed answers; counts survive a restart; two replicas on one PostgreSQL share them exactly.
 */
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { postgresFixture } from '../helpers/postgres.js';

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
});
