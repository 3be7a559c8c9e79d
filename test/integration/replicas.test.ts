/**
 * Replicas sharing one store: two gateways (two apps, two replica ids) on one storage directory and one
 * index, as `serve --workers N` runs them. A replica that stopped without closing its state is swept by
 * exactly one live replica; a live sibling's state is never touched; retention runs on one at a time.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { parseDuration } from '../../server/config/duration.js';
import { validateConfig } from '../../server/config/load.js';
import { INDEX_FILE } from '../../server/recording/open-storage.js';
import { SEAL_LOG_FILE } from '../../server/recording/seal-log-format.js';
import { replicaIdOf } from '../../server/replica/replica-config.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { NewSession } from '../../server/store/store.js';
import { SluiceError } from '../../shared/errors.js';
import { heldRequest, ROOMY } from '../helpers/store-conformance-reviews.js';
import { chatBody, gatewayFixture, openRawTunnel, refusedUpgrade, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';

const gateways = gatewayFixture();

const MINUTE = 60_000;
/** Long enough that no heartbeat falls due in real time while a test runs: time passes when a test advances the clocks. */
const REPLICA = { heartbeat_interval: '10m', dead_after: '30m' };
const DEAD_AFTER = parseDuration(REPLICA.dead_after);

/** Log lines of one gateway, parsed. */
function logSink(): { lines: Array<Record<string, unknown>>; stream: { write(line: string): void } } {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, stream: { write: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>) } };
}

/**
 * Replicas `a/0` and `b/0` with `config`, on one storage directory and index, their warnings logged; and a
 * connection of the test's own to that index.
 */
async function twoReplicas(config: Record<string, unknown> = {}) {
  const logs = [logSink(), logSink()];
  const first = await gateways.start({ config: { ...config, replica: { ...REPLICA, id: 'a/0' } }, app: { logger: { level: 'warn', stream: logs[0]!.stream } } });
  const second = await startSibling(first, { config: { ...config, replica: { ...REPLICA, id: 'b/0' } }, app: { logger: { level: 'warn', stream: logs[1]!.stream } } });
  const store = new SqliteStore({ file: join(first.storageDir, INDEX_FILE) });
  onTestFinished(() => store.close());
  return { first, second, store, logs };
}

/** Another gateway on `of`'s storage directory, index and master key. */
function startSibling(of: TestGateway, options: TestGatewayOptions): Promise<TestGateway> {
  const config = options.config ?? {};
  return gateways.start({ ...options, config: { ...config, storage: { ...(config.storage as object | undefined), dir: of.storageDir, master_key: of.masterKey } } });
}

/** Moves every gateway's clock forward together, as real time would. */
function advance(gws: TestGateway[], ms: number): void {
  for (const gw of gws) gw.clock.advance(ms);
}

/** A session row of replica `gone/0`, unless `fields` say otherwise; its file was never written here. */
function sessionRow(fields: Partial<NewSession>): NewSession {
  const id = `ses_${randomBytes(16).toString('hex')}`;
  return {
    id,
    user: 'alice',
    groups: ['ml-eng'],
    connection: 'llm',
    via: 'tunnel',
    clientAddress: '127.0.0.1',
    startedAt: Date.now(),
    file: `sessions/gone/${id}.rec`,
    keyId: 'default',
    replica: 'gone/0',
    ...fields,
  };
}

/** A webhook receiver; `events` lists each delivery's `x-sluice-event` and review id. */
async function webhookReceiver(): Promise<{ url: string; events: Array<{ type: string; review: string }> }> {
  const events: Array<{ type: string; review: string }> = [];
  const server = http.createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const parsed = JSON.parse(body) as { review?: { id?: string } };
      events.push({ type: String(req.headers['x-sluice-event']), review: parsed.review?.id ?? '' });
      res.end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, events };
}

async function reviewAs(gw: TestGateway, token: string, id: string): Promise<{ status: string; resolution: string | null }> {
  const res = await fetch(`${gw.url}/v1/reviews/${id}`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as { status: string; resolution: string | null };
}

describe('replicas sharing a store', () => {
  it('sweeps a replica that stopped, once: its open session interrupted, its held review abandoned (webhook told), its tunnel slot freed', async () => {
    const hook = await webhookReceiver();
    const { first, second, store, logs } = await twoReplicas({
      tunnel: { max_per_user: 1 },
      approval: { webhooks: [{ url: hook.url, events: ['review.abandoned'], retries: 0 }] },
    });
    const both = [first, second];
    // What replica gone/0 left when it stopped: an open session, a request held for review, alice's one tunnel place.
    await store.heartbeat('gone/0', first.clock.now());
    const session = sessionRow({});
    await store.createSession(session);
    const now = first.clock.now();
    const review = await store.createReview(
      heldRequest({ createdAt: now, expiresAt: now + 24 * 60 * MINUTE, sessionId: session.id, replica: 'gone/0' }),
      ROOMY,
    );
    expect(await store.acquireTunnelSlot('alice', 'gone/0', 1)).toEqual(expect.any(String));
    const alice = await first.token('alice');
    expect((await refusedUpgrade(first.tunnelUrl('llm'), { authorization: `Bearer ${alice}` })).body.error?.code).toBe('ERR_TUNNEL_LIMIT');

    // Seen a moment ago: not dead yet, whoever sweeps. Of two sweeps at once, one holds the lease.
    const early = await Promise.all([first.app.replica.sweepNow(), second.app.replica.sweepNow()]);
    expect(early.filter((r) => r === undefined)).toHaveLength(1);
    expect(early.find((r) => r !== undefined)).toEqual([]);
    expect((await store.getSession(session.id))?.status).toBe('open');

    // dead_after passes: both live replicas heartbeat, and sweep, on their timers; gone/0 is silent.
    advance(both, DEAD_AFTER + MINUTE);
    // Tokens are judged by the gateways' clocks: the one from before has expired.
    const aliceNow = await first.token('alice');
    await vi.waitFor(async () => expect((await reviewAs(first, aliceNow, review.id)).status).toBe('abandoned'), { timeout: 10_000 });
    const after = await reviewAs(second, aliceNow, review.id);
    expect(after.resolution).toMatch(/replica holding the request \(gone\/0\) stopped/);
    expect(await store.getSession(session.id)).toMatchObject({ status: 'interrupted', endedAt: expect.any(Number) });
    await vi.waitFor(() => expect(hook.events).toContainEqual({ type: 'review.abandoned', review: review.id }), { timeout: 10_000 });

    // Alice's place is hers again.
    const tunnel = openRawTunnel(first.tunnelUrl('llm'), aliceNow);
    await tunnel.hello;
    tunnel.ws.close();

    // Exactly one replica swept it, and said so; a sweep now finds nothing left.
    const sweptLines = logs.flatMap((l) => l.lines).filter((l) => l.replica === 'gone/0' && typeof l.msg === 'string' && l.msg.includes('stopped without closing its state'));
    expect(sweptLines).toHaveLength(1);
    expect(sweptLines[0]).toMatchObject({ sessions: [session.id], reviews: [review.id], tunnel_slots: 1, swept_by: expect.stringMatching(/^[ab]\/0$/) });
    const again = await Promise.all([second.app.replica.sweepNow(), first.app.replica.sweepNow()]);
    expect(again.filter((r) => r === undefined)).toHaveLength(1);
    expect(again.find((r) => r !== undefined)).toEqual([]);
    expect(hook.events.filter((e) => e.review === review.id)).toHaveLength(1);
  });

  it('never touches a live sibling: a second worker on the same host starting, sweeping, and time passing leave its open session open', async () => {
    // No replica.id: both are this host's, told apart by their worker numbers, as `serve --workers 2` runs them.
    const first = await gateways.start({ config: { replica: REPLICA } });
    const alice = await first.token('alice');
    const call = (gw: TestGateway, token: string) =>
      fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: chatBody('hello') });
    expect((await call(first, alice)).status).toBe(200);
    const store = new SqliteStore({ file: join(first.storageDir, INDEX_FILE) });
    onTestFinished(() => store.close());
    const [mine] = (await store.listSessions({ status: 'open' })).sessions;
    expect(mine).toMatchObject({ replica: first.app.replica.id, status: 'open' });

    const second = await startSibling(first, { config: { replica: REPLICA }, app: { worker: 1 } });
    expect([first.app.replica.id, second.app.replica.id]).toEqual([`${hostname()}/0`, `${hostname()}/1`]);
    expect((await store.getSession(mine!.id))?.status).toBe('open');

    expect(await second.app.replica.sweepNow()).toEqual([]);
    // Twice dead_after passes, the two replicas heartbeating all along.
    advance([first, second], DEAD_AFTER + MINUTE);
    advance([first, second], DEAD_AFTER + MINUTE);
    const swept = await Promise.all([second.app.replica.sweepNow(), first.app.replica.sweepNow()]);
    expect(swept.flatMap((r) => r ?? [])).toEqual([]);
    expect((await store.getSession(mine!.id))?.status).toBe('open');
    // The session still records: the sibling's exchanges go on in it.
    expect((await call(first, await first.token('alice'))).status).toBe(200);
    await vi.waitFor(async () => expect((await store.getSession(mine!.id))?.counters.requests).toBe(2), { timeout: 10_000 });
  });

  it('runs retention on one replica at a time: two sweeps at once destroy an expired session once, and log it once', async () => {
    const { first, second, store } = await twoReplicas({ storage: { retention_days: 30 } });
    const expired = sessionRow({ replica: 'a/0', startedAt: Date.now() - 40 * 24 * 60 * MINUTE });
    await store.createSession(expired);
    await store.closeSession(expired.id, { status: 'closed', endedAt: expired.startedAt + 1000 });

    const destroyed = await Promise.all([first.app.replica.retentionNow(), second.app.replica.retentionNow()]);
    expect(destroyed.filter((n) => n === undefined)).toHaveLength(1);
    expect(destroyed.find((n) => n !== undefined)).toBe(1);
    expect(await store.getSession(expired.id)).toBeUndefined();
    const seals = (await readFile(join(first.storageDir, SEAL_LOG_FILE), 'utf8')).split('\n').filter((line) => line.includes(expired.id));
    expect(seals).toHaveLength(1);
    expect(JSON.parse(seals[0]!)).toMatchObject({ type: 'destroyed', session: expired.id });
    // The lease was given back: the next sweep runs, and finds nothing left.
    expect(await second.app.replica.retentionNow()).toBe(0);
  });
});

describe('replica configuration', () => {
  const minimal = { identity: { issuer: 'https://idp.example.com', audience: 'sluice', cli_client_id: 'sluice-cli' } };

  it('defaults to the host name and the worker number, heartbeats every 5s and a replica dead after 30s', () => {
    const config = validateConfig(minimal);
    expect(config.replica).toEqual({ heartbeat_interval: '5s', dead_after: '30s' });
    expect(replicaIdOf(config.replica.id)).toBe(`${hostname()}/0`);
    expect(replicaIdOf(config.replica.id, 3)).toBe(`${hostname()}/3`);
    const pod = validateConfig({ ...minimal, replica: { id: 'pod-7f9c' } });
    expect(replicaIdOf(pod.replica.id)).toBe('pod-7f9c');
    expect(replicaIdOf(pod.replica.id, 2)).toBe('pod-7f9c/2');
  });

  it('refuses dead_after no longer than heartbeat_interval, saying why', () => {
    for (const replica of [{ heartbeat_interval: '30s', dead_after: '30s' }, { heartbeat_interval: '1m', dead_after: '45s' }, { dead_after: '5s' }]) {
      let error: SluiceError | undefined;
      try {
        validateConfig({ ...minimal, replica });
      } catch (err) {
        error = err as SluiceError;
      }
      expect(error?.code).toBe('ERR_CONFIG_INVALID');
      expect(error?.message).toMatch(/replica\.dead_after: must be longer than heartbeat_interval \((30s|1m|5s)\)/);
    }
    expect(() => validateConfig({ ...minimal, replica: { id: 'has space' } })).toThrow(/replica\.id/);
    expect(validateConfig({ ...minimal, replica: { heartbeat_interval: '1s', dead_after: '10s' } }).replica.dead_after).toBe('10s');
  });
});

