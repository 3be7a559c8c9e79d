/**
 * Two gateways (replicas a/0 and b/0) on one PostgreSQL index and one bucket (s3rver), each with a spool of
 * its own, `storage.upload_interval: 200ms`: a session kept open on a is read through b's API while it
 * runs (events, export, verify), marked open, and read whole once a seals it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { gatewayFixture, modelConnection, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { postgresFixture } from '../helpers/postgres.js';
import { s3Fixture } from '../helpers/s3-server.js';

const postgres = postgresFixture();
const s3 = s3Fixture({ credentialsInEnv: true });
const gateways = gatewayFixture();

async function twoReplicas(): Promise<[TestGateway, TestGateway]> {
  const database = await postgres.database();
  const bucket = await s3.bucket();
  // One checkpoint signing key for both, as replicas are deployed: a session sealed on a verifies on b.
  const keys = await mkdtemp(join(tmpdir(), 'sluice-seg-keys-'));
  onTestFinished(() => rm(keys, { recursive: true, force: true }));
  const storage = { database, signing_key: join(keys, 'signing-key.pem'), recordings: { type: 's3', bucket, prefix: 'rec/', endpoint: s3.endpoint, force_path_style: true }, upload_interval: '200ms' };
  const common: TestGatewayOptions = {
    connections: ({ model }) => [modelConnection(model, { record: { request_body: 'raw', response_body: 'raw' } })],
  };
  const replica = { heartbeat_interval: '10m', dead_after: '30m' };
  const a = await gateways.start({ ...common, config: { storage, replica: { ...replica, id: 'a/0' } } });
  const b = await gateways.start({ ...common, config: { storage: { ...storage, master_key: a.masterKey }, replica: { ...replica, id: 'b/0' } } });
  return [a, b];
}

/** The request bodies among a session's events, as text. */
function requestBodies(ndjson: string): string[] {
  return ndjson
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as { type: string; payload?: string })
    .filter((e) => e.type === 'exchange.request' && e.payload !== undefined)
    .map((e) => Buffer.from(e.payload!, 'base64').toString('utf8'));
}

async function get(gw: TestGateway, token: string, path: string): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe('an open session read from another replica', () => {
  it('is read through b from its segments while a keeps it open, marked open; sealed, it reads whole and verifies', async () => {
    const [a, b] = await twoReplicas();
    const sdk = new OpenAI({ baseURL: `${a.url}/v1/proxy/llm/v1`, apiKey: await a.token('alice'), maxRetries: 0, timeout: 30_000 });
    await sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'first question, recorded on a' }] });
    const [session] = await a.sessions();
    expect(session).toMatchObject({ status: 'open', replica: 'a/0' });
    const carol = await b.token('carol');

    // Within an upload interval or so, b reads the first exchange from the bucket; the session is still open on a.
    await vi.waitFor(
      async () => {
        const events = await get(b, carol, `/v1/sessions/${session!.id}/events`);
        expect(events.status).toBe(200);
        expect(events.headers.get('x-sluice-session-status')).toBe('open');
        expect(requestBodies(events.text).join()).toContain('first question, recorded on a');
      },
      { timeout: 15_000, interval: 100 },
    );
    const detail = await get(b, carol, `/v1/sessions/${session!.id}`);
    expect(JSON.parse(detail.text)).toMatchObject({ session: { status: 'open' }, verify: { status: 'open', problems: [{ kind: 'interrupted' }] } });
    const exported = await get(b, carol, `/v1/sessions/${session!.id}/export?format=jsonl`);
    expect(exported.status).toBe(200);
    expect(exported.headers.get('x-sluice-verify')).toBe('open');

    // A second exchange follows within the next interval.
    await sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'second question, still open' }] });
    await vi.waitFor(
      async () => expect(requestBodies((await get(b, carol, `/v1/sessions/${session!.id}/events`)).text).join()).toContain('second question, still open'),
      { timeout: 15_000, interval: 100 },
    );

    await a.stopApp(); // seals the session: the whole file replaces the segments
    const sealed = await get(b, carol, `/v1/sessions/${session!.id}`);
    expect(JSON.parse(sealed.text)).toMatchObject({ session: { status: 'closed' }, verify: { status: 'intact', problems: [] } });
    const events = await get(b, carol, `/v1/sessions/${session!.id}/events`);
    expect(requestBodies(events.text).join()).toContain('second question, still open');
    expect(events.text).toContain('session.checkpoint');
  });
});
