/**
 * Gateways whose index is PostgreSQL (`storage.database`): two replicas on one database, each with its own
 * storage directory for session files, as replicas on two machines run. A call recorded on one is listed by
 * the other; a call held on one is released when a reviewer approves through the other.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it, vi } from 'vitest';
import { INDEX_FILE } from '../../server/recording/open-storage.js';
import type { ReviewJson } from '../../shared/reviews-api.js';
import type { SessionListJson } from '../../shared/sessions-api.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { postgresFixture } from '../helpers/postgres.js';

const postgres = postgresFixture();
const gateways = gatewayFixture();

const POLICIES = [{ name: 'frontier-models-need-review', when: 'request.json.?model.orValue("") == "gpt-5"', action: 'review', reviewers: ['ml-leads'], timeout: '10m' }];

/** Replicas `a/0` and `b/0` on one fresh database, one master key, a storage directory each. */
async function twoReplicas(): Promise<[TestGateway, TestGateway]> {
  const database = await postgres.database();
  const config = { policies: POLICIES, replica: { heartbeat_interval: '10m', dead_after: '30m' } };
  const a = await gateways.start({ config: { ...config, storage: { database }, replica: { ...config.replica, id: 'a/0' } } });
  const b = await gateways.start({ config: { ...config, storage: { database, master_key: a.masterKey }, replica: { ...config.replica, id: 'b/0' } } });
  return [a, b];
}

function sdk(gw: TestGateway, token: string): OpenAI {
  return new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: token, maxRetries: 0, timeout: 30_000 });
}

async function api<T>(gw: TestGateway, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

describe('a gateway on PostgreSQL', () => {
  it('records a call in the shared index: the other replica lists it, and no SQLite index is made', async () => {
    const [a, b] = await twoReplicas();
    const completion = await sdk(a, await a.token('alice')).chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'recorded on a' }] });
    expect(completion.choices[0]?.message.content).toContain('recorded on a');

    const carol = await b.token('carol');
    await vi.waitFor(
      async () => {
        const listed = await api<SessionListJson>(b, carol, 'GET', '/v1/sessions?user=alice');
        expect(listed.status).toBe(200);
        expect(listed.body.sessions).toEqual([expect.objectContaining({ user: { sub: 'alice', email: 'alice@example.com' }, connection: 'llm', via: 'proxy', models: ['demo'] })]);
      },
      { timeout: 10_000, interval: 50 },
    );
    const [session] = await a.sessions();
    expect(session).toMatchObject({ user: 'alice', replica: 'a/0', counters: expect.objectContaining({ requests: 1 }), models: ['demo'] });
    for (const gw of [a, b]) expect(existsSync(join(gw.storageDir, INDEX_FILE))).toBe(false);
  });

  it('releases a call held on one replica when a reviewer approves through the other', async () => {
    const [a, b] = await twoReplicas();
    const before = a.model.requests.length;
    const call = sdk(a, await a.token('alice')).chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'held on a' }] });
    const bob = await b.token('bob');
    let review: ReviewJson | undefined;
    await vi.waitFor(
      async () => {
        const { body } = await api<{ reviews: ReviewJson[] }>(b, bob, 'GET', '/v1/reviews?status=pending');
        review = body.reviews[0];
        expect(review).toMatchObject({ status: 'pending', requester: { sub: 'alice' }, rule: 'frontier-models-need-review' });
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(a.model.requests.length).toBe(before);

    const approved = await api<{ review: ReviewJson }>(b, bob, 'POST', `/v1/reviews/${review!.id}/approve`, { reason: 'fine' });
    expect(approved.status).toBe(200);
    expect(approved.body.review).toMatchObject({ status: 'approved', resolved_by: { sub: 'bob' } });
    const completion = await call;
    expect(completion.choices[0]?.message.content).toContain('held on a');
    expect(a.model.requests.length).toBe(before + 1);
  });
});
