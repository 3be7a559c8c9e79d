import { createHmac } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';
import { startHttpReceiver, startSyslogReceiver, type HttpReceiver, type SyslogReceiver } from '../helpers/audit-receivers.js';
import { postgresFixture } from '../helpers/postgres.js';

const gateways = gatewayFixture();
const postgres = postgresFixture();

const SECRET = 'audit-webhook-secret-0123456789';
const HEC_TOKEN = 'hec-token-4f1c2b';
const FAST_RETRY = { retry_delay: '20ms', max_retry_delay: '100ms' };

interface Ev {
  id: string;
  kind: string;
  at: number;
  session?: string;
  [k: string]: unknown;
}

const webhookEvents = (r: HttpReceiver): Ev[] => r.deliveries.filter((d) => d.path === '/hook').flatMap((d) => (JSON.parse(d.body) as { events: Ev[] }).events);
const hecEvents = (r: HttpReceiver): Ev[] =>
  r.deliveries.filter((d) => d.path === '/services/collector/event').flatMap((d) => d.body.split('\n').map((line) => (JSON.parse(line) as { event: Ev }).event));
const syslogEvents = (r: SyslogReceiver): Ev[] => r.messages.map((m) => JSON.parse(m.msg) as Ev);
async function fileEvents(path: string): Promise<Ev[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Ev);
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-audit-'));
  process.env.SLUICE_TEST_HEC_TOKEN = HEC_TOKEN;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function api(gw: TestGateway, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function pendingReviewId(gw: TestGateway, reviewer: string, rule: string): Promise<string> {
  let id = '';
  await vi.waitFor(
    async () => {
      const { body } = await api(gw, reviewer, 'GET', '/v1/reviews?status=pending');
      const found = (body.reviews as { id: string; rule: string }[]).find((r) => r.rule === rule);
      expect(found).toBeDefined();
      id = found!.id;
    },
    { timeout: 10_000, interval: 50 },
  );
  return id;
}

describe('audit sinks', () => {
  it('delivers every kind of event to a webhook, Splunk HEC, syslog and a file, with nothing secret in them', async () => {
    const http = await startHttpReceiver();
    const syslog = await startSyslogReceiver();
    onTestFinished(async () => {
      await http.close();
      await syslog.stop();
    });
    const file = join(dir, 'all', 'audit.jsonl');
    const gw = await gateways.start({
      reloadable: true,
      connections: ({ model }) => [modelConnection(model), modelConnection(model, { name: 'vault', requires_grant: true, grant: { reviewers: ['ml-leads'], max_duration: '8h' } })],
      config: {
        policies: [
          { name: 'held', when: 'request.headers[?"x-review-me"].orValue("") == "yes"', action: 'review', reviewers: ['ml-leads'], timeout: '10m' },
          { name: 'quick', when: 'request.headers[?"x-review-me"].orValue("") == "quick"', action: 'review', reviewers: ['ml-leads'], timeout: '200ms' },
        ],
        audit: {
          sinks: [
            { name: 'hook', type: 'webhook', url: `${http.url}/hook`, secret: SECRET, ...FAST_RETRY },
            { name: 'splunk', type: 'splunk_hec', url: http.url, token: '${env:SLUICE_TEST_HEC_TOKEN}', index: 'sec', ...FAST_RETRY },
            { name: 'siem', type: 'syslog', host: '127.0.0.1', port: syslog.port, ...FAST_RETRY },
            { name: 'disk', type: 'file', path: file, ...FAST_RETRY },
          ],
        },
      },
    });
    const alice = await gw.token('alice');
    const bob = await gw.token('bob');
    const pat = await gw.token('alice', { sub: 'pat', email: 'pat@example.com', groups: ['platform'] });
    const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: alice, maxRetries: 0 });
    const secretWord = 'the-prompt-says-pineapple';
    await sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: `mail alice@example.com ${secretWord}` }] });
    // Held, then approved; held, then rejected; held until it expires.
    const approved = sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-review-me': 'yes' } });
    await api(gw, bob, 'POST', `/v1/reviews/${await pendingReviewId(gw, bob, 'held')}/approve`, {});
    await approved;
    const rejected = sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-review-me': 'yes' } }).catch((e: unknown) => e);
    await api(gw, bob, 'POST', `/v1/reviews/${await pendingReviewId(gw, bob, 'held')}/reject`, { reason: 'no' });
    await rejected;
    await sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-review-me': 'quick' } }).catch((e: unknown) => e);
    // An access request, granted.
    const grant = await api(gw, alice, 'POST', '/v1/grants', { connection: 'vault', duration: '1h', reason: 'incident 7' });
    await api(gw, bob, 'POST', `/v1/reviews/${grant.body.id as string}/approve`, {});
    expect((await fetch(`${gw.url}/v1/me`, { headers: { authorization: 'Bearer not-a-token' } })).status).toBe(401);
    expect((await api(gw, pat, 'POST', '/v1/admin/reload')).status).toBe(200);
    // The proxy session closes with the gateway; its session.closed is sent once the gateway is back.
    await gw.stopApp();
    await gw.startApp();

    const kinds = ['session.opened', 'exchange', 'review.requested', 'review.approved', 'review.rejected', 'review.expired', 'grant.created', 'identity.failure', 'admin.reload', 'session.closed'];
    let all: Ev[][] = [];
    await vi.waitFor(
      async () => {
        all = [webhookEvents(http), hecEvents(http), syslogEvents(syslog), await fileEvents(file)];
        for (const events of all) for (const k of kinds) expect(events.map((e) => e.kind)).toContain(k);
      },
      { timeout: 15_000, interval: 100 },
    );
    // One stream of events, the same at every sink.
    const ids = all[0]!.map((e) => e.id);
    for (const events of all.slice(1)) expect(events.map((e) => e.id).slice(0, ids.length)).toEqual(ids.slice(0, events.length));

    const exchange = all[3]!.find((e) => e.kind === 'exchange' && e.code === 'none')!;
    expect(exchange).toMatchObject({ user: { sub: 'alice', groups: ['ml-eng'] }, connection: 'llm', via: 'proxy', model: 'demo', decision: 'allow', status: 200, tokens: { in: expect.any(Number), out: expect.any(Number) } });
    expect(exchange.request).toMatch(/^req_/);
    const opened = all[3]!.find((e) => e.kind === 'session.opened')!;
    expect(opened.session).toBe(exchange.session);
    expect(all[3]!.find((e) => e.kind === 'identity.failure')).toMatchObject({ code: expect.stringMatching(/^ERR_/) });
    expect(all[3]!.find((e) => e.kind === 'grant.created')).toMatchObject({ sub: 'alice', connection: 'vault', approved_by: ['bob'] });
    expect(all[3]!.find((e) => e.kind === 'admin.reload')).toMatchObject({ by: 'pat', result: 'applied' });
    // Never bodies, header values or tokens.
    for (const events of all) {
      const text = JSON.stringify(events);
      for (const secret of [secretWord, 'alice@example.com', alice, 'not-a-token', HEC_TOKEN]) expect(text).not.toContain(secret);
    }

    // Webhook: signed as review webhooks are.
    const hook = http.deliveries.find((d) => d.path === '/hook')!;
    const t = hook.headers['x-sluice-timestamp'] as string;
    expect(hook.headers['x-sluice-signature']).toBe(`t=${t},v1=${createHmac('sha256', SECRET).update(`${t}.${hook.body}`).digest('hex')}`);
    // HEC: the token from the environment, the envelope HEC wants.
    const hec = http.deliveries.find((d) => d.path === '/services/collector/event')!;
    expect(hec.headers.authorization).toBe(`Splunk ${HEC_TOKEN}`);
    expect(JSON.parse(hec.body.split('\n')[0]!)).toMatchObject({ time: expect.any(Number), host: expect.any(String), source: 'sluice', sourcetype: 'sluice:audit', index: 'sec', event: { id: expect.stringMatching(/^aev_/) } });
    // Syslog: RFC 5424, facility log audit, app sluice, the kind as MSGID.
    const msg = syslog.messages.find((m) => m.msgid === 'identity.failure')!;
    expect(msg).toMatchObject({ version: '1', app: 'sluice', sd: '-', pri: 13 * 8 + 4 });
    expect(syslog.messages.find((m) => m.msgid === 'session.opened')!.pri).toBe(13 * 8 + 6);
  });

  it('keeps delivering after a receiver was down: everything arrives, in order, with no gap; the outbox is then empty', async () => {
    const syslog = await startSyslogReceiver();
    onTestFinished(() => syslog.stop());
    const gw = await gateways.start({
      config: { metrics_listen: '127.0.0.1:0', audit: { sinks: [{ name: 'siem', type: 'syslog', host: '127.0.0.1', port: syslog.port, ...FAST_RETRY }] } },
    });
    const alice = await gw.token('alice');
    await syslog.stop();
    const requests: string[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await fetch(`${gw.url}/v1/proxy/llm/v1/models`, { headers: { authorization: `Bearer ${alice}` } });
      await res.arrayBuffer();
      requests.push(res.headers.get('x-request-id')!);
    }
    // The sink is failing and retrying meanwhile.
    await vi.waitFor(async () => expect((await gw.app.metrics!.scrape()).body).toMatch(/sluice_audit_events_total\{sink="siem",result="failed"\} [1-9]/), { timeout: 10_000 });
    await syslog.start();
    await vi.waitFor(() => expect(syslogEvents(syslog).filter((e) => e.kind === 'exchange')).toHaveLength(12), { timeout: 10_000, interval: 50 });
    const events = syslogEvents(syslog);
    expect(events.filter((e) => e.kind === 'exchange').map((e) => e.request)).toEqual(requests);
    // session.opened comes before its exchanges.
    expect(events[0]).toMatchObject({ kind: 'session.opened', session: events[1]!.session });
    await vi.waitFor(async () => expect((await gw.app.metrics!.scrape()).body).toMatch(/sluice_audit_outbox_depth\{sink="siem"\} 0/), { timeout: 5000 });
  });

  it('drops the oldest events past audit.outbox_max, counts them, and delivers the rest', async () => {
    const http = await startHttpReceiver();
    onTestFinished(() => http.close());
    http.failing = true;
    const gw = await gateways.start({
      config: { metrics_listen: '127.0.0.1:0', audit: { outbox_max: 5, flush_interval: '25ms', sinks: [{ name: 'hook', type: 'webhook', url: `${http.url}/hook`, events: ['identity.*'], ...FAST_RETRY }] } },
    });
    for (let i = 0; i < 12; i++) {
      await fetch(`${gw.url}/v1/me`, { headers: { authorization: `Bearer bad-${i}` } });
      // One append per event (the emitter writes every 25 ms here), so the cap is met event by event.
      await new Promise((r) => setTimeout(r, 60));
    }
    await vi.waitFor(async () => expect((await gw.app.metrics!.scrape()).body).toContain('sluice_audit_events_dropped_total{from="outbox"} 7'), { timeout: 5000 });
    const before = (await gw.app.metrics!.scrape()).body;
    expect(before).toContain('sluice_audit_outbox_depth{sink="hook"} 5');
    http.failing = false;
    await vi.waitFor(() => expect(webhookEvents(http)).toHaveLength(5), { timeout: 10_000, interval: 50 });
    expect(webhookEvents(http).every((e) => e.kind === 'identity.failure')).toBe(true);
  });

  it('keeps undelivered events across a restart, and sends them once the gateway is back', async () => {
    const http = await startHttpReceiver();
    onTestFinished(() => http.close());
    http.failing = true;
    const gw = await gateways.start({ config: { audit: { sinks: [{ name: 'hook', type: 'webhook', url: `${http.url}/hook`, events: ['identity.failure'], ...FAST_RETRY }] } } });
    for (let i = 0; i < 4; i++) await fetch(`${gw.url}/v1/me`, { headers: { authorization: `Bearer bad-${i}` } });
    await vi.waitFor(() => expect(http.refused).toBeGreaterThan(0), { timeout: 5000 });
    await gw.stopApp();
    http.failing = false;
    expect(webhookEvents(http)).toHaveLength(0);
    await gw.startApp();
    await vi.waitFor(() => expect(webhookEvents(http)).toHaveLength(4), { timeout: 10_000, interval: 50 });
  });
});

describe('audit sinks on PostgreSQL', () => {
  it('two gateways on one database deliver each event once to a sink', async () => {
    const http = await startHttpReceiver();
    onTestFinished(() => http.close());
    const database = await postgres.database();
    const sinks = [{ name: 'hook', type: 'webhook', url: `${http.url}/hook`, events: ['identity.failure'], ...FAST_RETRY }];
    const replica = { heartbeat_interval: '10m', dead_after: '30m' };
    const a = await gateways.start({ config: { storage: { database }, replica: { ...replica, id: 'a/0' }, audit: { sinks } } });
    const b = await gateways.start({ config: { storage: { database, master_key: a.masterKey }, replica: { ...replica, id: 'b/0' }, audit: { sinks } } });
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => fetch(`${(i % 2 === 0 ? a : b).url}/v1/me`, { headers: { authorization: `Bearer bad-${i}` } })),
    );
    await vi.waitFor(() => expect(webhookEvents(http).length).toBeGreaterThanOrEqual(40), { timeout: 15_000, interval: 50 });
    // Settled: nothing more arrives.
    await new Promise((r) => setTimeout(r, 500));
    const events = webhookEvents(http);
    expect(events).toHaveLength(40);
    expect(new Set(events.map((e) => e.id)).size).toBe(40);
    expect(new Set(events.map((e) => e.replica))).toEqual(new Set(['a/0', 'b/0']));
  });
});

describe('audit events of erasure, signalled reloads and abandoned reviews', () => {
  const DAY = 86_400_000;
  const fileSink = (name: string) => ({ name: 'disk', type: 'file', path: join(dir, name, 'audit.jsonl'), ...FAST_RETRY });

  it('tells admin.erase for each session the retention sweep destroys', async () => {
    const sink = fileSink('erase');
    const gw = await gateways.start({ config: { storage: { retention_days: 30 }, audit: { sinks: [sink] } } });
    const alice = await gw.token('alice');
    const res = await fetch(`${gw.url}/v1/proxy/llm/v1/models`, { headers: { authorization: `Bearer ${alice}` } });
    await res.arrayBuffer();
    // The proxy session is sealed as the gateway stops; a month later the next start sweeps it away.
    await gw.stopApp();
    gw.clock.advance(31 * DAY);
    await gw.startApp();
    let events: Ev[] = [];
    await vi.waitFor(
      async () => {
        events = await fileEvents(sink.path);
        expect(events.map((e) => e.kind)).toContain('admin.erase');
      },
      { timeout: 10_000, interval: 50 },
    );
    const opened = events.find((e) => e.kind === 'session.opened')!;
    expect(events.filter((e) => e.kind === 'admin.erase')).toEqual([expect.objectContaining({ session: opened.session, by: 'retention', retention_days: 30 })]);
    expect(await gw.sessions()).toEqual([]);
  });

  it('audits a reload by SIGHUP as POST /v1/admin/reload is: applied, then refused with its code', async () => {
    const sink = fileSink('sighup');
    const gw = await gateways.start({ reloadable: true, config: { audit: { sinks: [sink] } } });
    // What `sluice serve` does on SIGHUP (startGateway's reload).
    await gw.app.reloadConfiguration!('SIGHUP');
    await writeFile(gw.configFile!, 'listen: [not, an, address]\n');
    await expect(gw.app.reloadConfiguration!('SIGHUP')).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' });
    await vi.waitFor(async () => expect((await fileEvents(sink.path)).filter((e) => e.kind === 'admin.reload')).toHaveLength(2), { timeout: 10_000, interval: 50 });
    const reloads = (await fileEvents(sink.path)).filter((e) => e.kind === 'admin.reload');
    expect(reloads[0]).toMatchObject({ by: 'SIGHUP', result: 'applied', applied: expect.any(Array) });
    expect(reloads[1]).toMatchObject({ by: 'SIGHUP', result: 'refused', code: 'ERR_CONFIG_INVALID' });
  });

  it('tells review.abandoned when a held caller leaves before a reviewer decides', async () => {
    const sink = fileSink('abandoned');
    const gw = await gateways.start({
      config: { policies: [{ name: 'held', when: 'true', action: 'review', reviewers: ['ml-leads'], timeout: '10m' }], audit: { sinks: [sink] } },
    });
    const alice = await gw.token('alice');
    const bob = await gw.token('bob');
    const leave = new AbortController();
    const held = fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] }),
      signal: leave.signal,
    }).catch((err: unknown) => err);
    const review = await pendingReviewId(gw, bob, 'held');
    leave.abort();
    await held;
    let abandoned: Ev | undefined;
    await vi.waitFor(
      async () => {
        abandoned = (await fileEvents(sink.path)).find((e) => e.kind === 'review.abandoned');
        expect(abandoned).toBeDefined();
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(abandoned).toMatchObject({ review, requester: 'alice', connection: 'llm', rule: 'held', status: 'abandoned' });
    // Nobody approved it after: no approval event follows.
    expect((await fileEvents(sink.path)).some((e) => e.kind === 'review.approved')).toBe(false);
  });
});
