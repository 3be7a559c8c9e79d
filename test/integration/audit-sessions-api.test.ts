/**
 * The sessions API against a real gateway (`buildApp` on 127.0.0.1, the test IdP, the demo model
 * server): sessions are recorded by the openai SDK calling the direct proxy, then listed, read,
 * streamed and exported over HTTP as auditors and as ordinary users see them.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import OpenAI from 'openai';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { LiveConfig } from '../../server/config/live-config.js';
import type { Config } from '../../server/config/schema.js';
import { EVENT_TYPES, type RecordedEvent } from '../../server/recording/event-types.js';
import { keyRingFromSettings } from '../../server/recording/key-ring.js';
import type { SessionDetailJson, SessionJson, SessionListJson } from '../../shared/sessions-api.js';
import { gatewayFixture, modelConnection } from '../helpers/gateway.js';
import { readStoredSession } from '../helpers/stored-sessions.js';

const PROMPT = 'Summarise the quarterly numbers for ACME-314159';

const gateways = gatewayFixture();
let live: LiveConfig;
let config: Config;
let url: string;
let dir: string;
let masterKey: string;
const tokens: Record<string, string> = {};
/** What the SDK received, to compare with what the API serves. */
let plainAnswer = '';
let streamedAnswer = '';
let aliceLlm: SessionJson;
let aliceLlm2: SessionJson;
let bobLlm: SessionJson;

function sdk(user: string, connection = 'llm'): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1/proxy/${connection}/v1`, apiKey: tokens[user]!, maxRetries: 0 });
}

async function get(path: string, user: string | undefined): Promise<Response> {
  return fetch(`${url}${path}`, { headers: user === undefined ? {} : { authorization: `Bearer ${tokens[user]}` } });
}

async function json<T>(path: string, user: string): Promise<{ status: number; body: T }> {
  const res = await get(path, user);
  return { status: res.status, body: (await res.json()) as T };
}

function lines(text: string): unknown[] {
  expect(text.endsWith('\n')).toBe(true);
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);
}

async function fileEvents(s: SessionJson): Promise<RecordedEvent[]> {
  return readStoredSession(dir, s.file, keyRingFromSettings({ master_key: masterKey })!);
}

/** Waits until the proxy's idle timer has sealed every session of the gateway. */
async function allSealed(count: number): Promise<SessionJson[]> {
  let sessions: SessionJson[] = [];
  await vi.waitFor(
    async () => {
      const { body } = await json<SessionListJson>('/v1/sessions?status=closed', 'carol');
      expect(body.sessions).toHaveLength(count);
      sessions = body.sessions;
    },
    { timeout: 15_000, interval: 100 },
  );
  return sessions;
}

beforeAll(async () => {
  const gw = await gateways.start({
    model: { chunks: 6, chunkDelayMs: 15 },
    connections: ({ model }) => [
      modelConnection(model, { allow_groups: ['ml-eng', 'ml-leads'], record: { request_body: 'raw', response_body: 'raw' } }),
      modelConnection(model, { name: 'llm2', record: { request_body: 'none', response_body: 'none' } }),
    ],
    config: { roles: { auditor: ['security'], admin: ['platform'], reviewer: ['ml-leads'] }, storage: { proxy_session_idle: '700ms' } },
  });
  ({ live, config, url, storageDir: dir, masterKey } = gw);
  for (const user of ['alice', 'bob', 'carol'] as const) tokens[user] = await gw.token(user);
  tokens.admin = await gw.token('dave', { sub: 'root', groups: ['platform'] });
  tokens.dave = await gw.token('dave', { groups: ['ml-eng'] });

  // Recorded traffic: alice on llm (plain, then streamed), bob on llm, alice on llm2, in that order.
  const completion = await sdk('alice').chat.completions.create({ model: 'demo-small', messages: [{ role: 'user', content: PROMPT }] });
  plainAnswer = completion.choices[0]!.message.content!;
  const stream = await sdk('alice').chat.completions.create({
    model: 'demo-large',
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: PROMPT }],
  });
  for await (const chunk of stream) streamedAnswer += chunk.choices[0]?.delta?.content ?? '';
  await sdk('bob').chat.completions.create({ model: 'demo-bob', messages: [{ role: 'user', content: 'hello from bob' }] });
  await sdk('alice', 'llm2').chat.completions.create({ model: 'demo-other', messages: [{ role: 'user', content: 'hello on llm2' }] });
  const sealed = await allSealed(3);
  [aliceLlm2, bobLlm, aliceLlm] = [sealed[0]!, sealed[1]!, sealed[2]!];
}, 60_000);

describe('GET /v1/sessions', () => {
  it('lists every session newest first for auditors, with the index facts of each', async () => {
    expect(aliceLlm).toMatchObject({ user: { sub: 'alice', email: 'alice@example.com' }, connection: 'llm', connection_type: 'http', via: 'proxy', status: 'closed', models: ['demo-small', 'demo-large'] });
    expect(aliceLlm.counters).toMatchObject({ requests: 2, errors: 0, denied: 0 });
    expect(aliceLlm.tokens.total).toBeGreaterThan(0);
    expect(aliceLlm.records).toBeGreaterThan(5);
    expect(bobLlm).toMatchObject({ user: { sub: 'bob' }, connection: 'llm', models: ['demo-bob'] });
    expect(aliceLlm2).toMatchObject({ user: { sub: 'alice' }, connection: 'llm2', models: ['demo-other'] });
    expect(Date.parse(aliceLlm2.started_at)).toBeGreaterThanOrEqual(Date.parse(bobLlm.started_at));
    const asAdmin = await json<SessionListJson>('/v1/sessions', 'admin');
    expect(asAdmin.body.sessions.map((s) => s.id)).toEqual([aliceLlm2.id, bobLlm.id, aliceLlm.id]);
  });

  it('filters by user, connection, model, status and time (ISO or epoch), combined with AND', async () => {
    const ids = async (query: string): Promise<string[]> => {
      const { status, body } = await json<SessionListJson>(`/v1/sessions?${query}`, 'carol');
      expect(status, query).toBe(200);
      return body.sessions.map((s) => s.id);
    };
    expect(await ids('user=alice')).toEqual([aliceLlm2.id, aliceLlm.id]);
    expect(await ids('connection=llm2')).toEqual([aliceLlm2.id]);
    expect(await ids('user=alice&connection=llm')).toEqual([aliceLlm.id]);
    expect(await ids('model=demo-large')).toEqual([aliceLlm.id]);
    expect(await ids('model=gpt-none')).toEqual([]);
    expect(await ids('status=open')).toEqual([]);
    const bobStart = Date.parse(bobLlm.started_at);
    expect(await ids(`since=${encodeURIComponent(bobLlm.started_at)}`)).toEqual([aliceLlm2.id, bobLlm.id]);
    expect(await ids(`until=${bobStart}`)).toEqual([aliceLlm.id]);
    expect(await ids(`until=${Math.floor(Date.parse(aliceLlm.started_at) / 1000)}`)).toEqual([]);
    expect(await ids(`since=${Math.ceil(Date.now() / 1000) + 60}`)).toEqual([]);
  });

  it('pages with limit and cursor until next is null, and refuses a forged cursor', async () => {
    const seen: string[] = [];
    let next: string | null = '';
    let pages = 0;
    while (next !== null) {
      const { body }: { body: SessionListJson } = await json<SessionListJson>(`/v1/sessions?limit=1${next ? `&cursor=${encodeURIComponent(next)}` : ''}`, 'carol');
      expect(body.sessions).toHaveLength(1);
      seen.push(body.sessions[0]!.id);
      next = body.next;
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual([aliceLlm2.id, bobLlm.id, aliceLlm.id]);
    const bad = await json<{ error: { code: string } }>('/v1/sessions?cursor=not-a-cursor', 'carol');
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('ERR_BAD_REQUEST');
    const badTime = await json<{ error: { code: string; message: string } }>('/v1/sessions?since=yesterday', 'carol');
    expect(badTime.status).toBe(400);
    expect(badTime.body.error.message).toMatch(/since/);
  });
});

describe('who sees what', () => {
  it('an ordinary user lists only their own sessions and is refused anyone else\'s', async () => {
    const own = await json<SessionListJson>('/v1/sessions', 'bob');
    expect(own.body.sessions.map((s) => s.id)).toEqual([bobLlm.id]);
    const other = await json<{ error: { code: string } }>('/v1/sessions?user=alice', 'bob');
    expect(other.status).toBe(403);
    expect(other.body.error.code).toBe('ERR_FORBIDDEN');
    expect((await json<SessionListJson>('/v1/sessions?user=bob', 'bob')).body.sessions.map((s) => s.id)).toEqual([bobLlm.id]);
    expect((await get('/v1/sessions', undefined)).status).toBe(401);
  });

  it("shows a user their own index entry without contents, and refuses another user's session and events with 403", async () => {
    const own = await json<SessionDetailJson>(`/v1/sessions/${bobLlm.id}`, 'bob');
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ session: { id: bobLlm.id }, contents: 'forbidden', exchanges: null, verify: { status: 'intact' } });

    const ownEvents = await get(`/v1/sessions/${bobLlm.id}/events`, 'bob');
    expect(ownEvents.status).toBe(403);
    expect(((await ownEvents.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'ERR_FORBIDDEN', message: expect.stringMatching(/users_read_own/) });
    for (const path of [`/v1/sessions/${aliceLlm.id}`, `/v1/sessions/${aliceLlm.id}/events`, `/v1/sessions/${aliceLlm.id}/export?format=har`]) {
      const res = await get(path, 'bob');
      expect(res.status, path).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_FORBIDDEN');
    }
    const unknown = await get('/v1/sessions/ses_00000000000000000000000000000000/events', 'carol');
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('ERR_NOT_FOUND');
  });

  it('lets users read their own contents, and only their own, once audit.users_read_own is set (applied on reload)', async () => {
    live.apply({ ...config, audit: { users_read_own: true } });
    try {
      const own = await get(`/v1/sessions/${bobLlm.id}/events`, 'bob');
      expect(own.status).toBe(200);
      expect((lines(await own.text())[0] as { type: string }).type).toBe('session.start');
      expect((await json<SessionDetailJson>(`/v1/sessions/${bobLlm.id}`, 'bob')).body.contents).toBe('readable');
      expect((await get(`/v1/sessions/${aliceLlm.id}/events`, 'bob')).status).toBe(403);
    } finally {
      live.apply(config);
    }
    expect((await get(`/v1/sessions/${bobLlm.id}/events`, 'bob')).status).toBe(403);
  });
});

describe('GET /v1/sessions/:id', () => {
  it('gives the auditor the verdict on the file and the exchanges with model, usage and timing', async () => {
    const { status, body } = await json<SessionDetailJson>(`/v1/sessions/${aliceLlm.id}`, 'carol');
    expect(status).toBe(200);
    expect(body.verify).toEqual({ status: 'intact', records: aliceLlm.records, last_good_seq: aliceLlm.records! - 1, last_good_offset: expect.any(Number), problems: [] });
    expect(body.contents).toBe('readable');
    expect(body.exchanges).toHaveLength(2);
    const [plain, streamed] = body.exchanges!;
    expect(plain).toMatchObject({ index: 1, method: 'POST', path: '/v1/chat/completions', status: 200, streamed: false, model: 'demo-small', finish_reason: 'stop' });
    expect(plain!.usage?.total_tokens).toBeGreaterThan(0);
    expect(streamed).toMatchObject({ index: 2, status: 200, streamed: true, model: 'demo-large' });
    expect(streamed!.usage?.completion_tokens).toBeGreaterThan(0);
    expect(streamed!.first_chunk_ms).toBeGreaterThanOrEqual(streamed!.ttfb_ms!);
  });

  it('shows a running session as open, its records so far intact', async () => {
    await sdk('dave', 'llm2').chat.completions.create({ model: 'demo-open', messages: [{ role: 'user', content: 'still going' }] });
    const { body } = await json<SessionListJson>('/v1/sessions?status=open&user=dave', 'carol');
    expect(body.sessions).toHaveLength(1);
    const detail = await json<SessionDetailJson>(`/v1/sessions/${body.sessions[0]!.id}`, 'carol');
    expect(detail.body.verify.status).toBe('open');
    expect(detail.body.verify.last_good_seq).toBe(detail.body.verify.records - 1);
    const events = await get(`/v1/sessions/${body.sessions[0]!.id}/events`, 'carol');
    expect(events.headers.get('x-sluice-session-status')).toBe('open');
    expect((lines(await events.text()) as { type: string }[]).map((e) => e.type)).toContain('exchange.end');
  });
});

describe('GET /v1/sessions/:id/events', () => {
  it('streams every decrypted event as one NDJSON line: seq, t, type, the fields, the payload as base64', async () => {
    const res = await get(`/v1/sessions/${aliceLlm.id}/events`, 'carol');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
    expect(res.headers.get('transfer-encoding')).toBe('chunked');
    const events = lines(await res.text()) as ({ seq: number; t: number; type: string; payload?: string } & Record<string, unknown>)[];
    const onDisk = await fileEvents(aliceLlm);
    // Every event, numbered 0, 1, 2… whatever record it shares: more events than records.
    expect(events.map((e) => e.seq)).toEqual(onDisk.map((_, i) => i));
    expect(events.length).toBeGreaterThan(aliceLlm.records!);
    expect(events.map((e) => e.type)).toEqual(onDisk.map((e) => e.type));
    expect(events[0]).toMatchObject({ seq: 0, type: 'session.start', session: aliceLlm.id, user: { sub: 'alice' }, connection: { name: 'llm', type: 'http' }, via: 'proxy' });
    const request = events.find((e) => e.type === 'exchange.request')!;
    expect(request).toMatchObject({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: '[removed]' }, body: { capture: 'raw' } });
    expect(JSON.parse(Buffer.from(request.payload!, 'base64').toString('utf8'))).toMatchObject({ model: 'demo-small', messages: [{ content: PROMPT }] });
    const end = events.filter((e) => e.type === 'exchange.end')[1]!;
    expect(end).toMatchObject({ status: 200, complete: true, model: 'demo-large', finish_reason: 'stop' });
    expect(events.at(-1)).toMatchObject({ type: 'session.checkpoint', session: aliceLlm.id, records: aliceLlm.records! - 1, final_hash: aliceLlm.final_hash });
  });

  it('starts at from_seq and leaves payloads out with payload=false', async () => {
    const res = await get(`/v1/sessions/${aliceLlm.id}/events?from_seq=3&payload=false`, 'carol');
    const events = lines(await res.text()) as { seq: number; payload?: string }[];
    const all = await fileEvents(aliceLlm);
    expect(events.map((e) => e.seq)).toEqual(all.slice(3).map((e) => e.seq));
    expect(events[0]!.seq).toBe(3);
    expect(events.some((e) => e.payload !== undefined)).toBe(false);
    const bad = await get(`/v1/sessions/${aliceLlm.id}/events?from_seq=-1`, 'carol');
    expect(bad.status).toBe(400);
  });
});

describe('GET /v1/sessions/:id/export', () => {
  it('format=har is a HAR 1.2 log with one entry per exchange: request, response, bodies as recorded, timings', async () => {
    const res = await get(`/v1/sessions/${aliceLlm.id}/export?format=har`, 'carol');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${aliceLlm.id}.har"`);
    const har = (await res.json()) as { log: { version: string; creator: { name: string; version: string }; entries: Record<string, any>[] } };
    expect(har.log.version).toBe('1.2');
    expect(har.log.creator).toEqual({ name: 'sluice', version: expect.any(String) });
    expect(har.log.entries).toHaveLength(2);
    for (const entry of har.log.entries) {
      expect(Number.isNaN(Date.parse(entry.startedDateTime))).toBe(false);
      expect(entry.time).toBeGreaterThanOrEqual(0);
      expect(entry.request).toMatchObject({ method: 'POST', url: 'http://llm/v1/chat/completions', httpVersion: 'HTTP/1.1', cookies: [], queryString: [], headersSize: -1 });
      expect(entry.request.headers).toContainEqual({ name: 'content-type', value: 'application/json' });
      expect(entry.response).toMatchObject({ status: 200, statusText: 'OK', httpVersion: 'HTTP/1.1', cookies: [], redirectURL: '', headersSize: -1 });
      expect(entry.response.content.size).toBeGreaterThan(0);
      expect(entry.cache).toEqual({});
      for (const k of ['send', 'wait', 'receive']) expect(entry.timings[k]).toBeGreaterThanOrEqual(0);
      expect(entry.timings.wait + entry.timings.receive + entry.timings.send).toBeLessThanOrEqual(entry.time);
    }
    const [plain, streamed] = har.log.entries;
    expect(JSON.parse(plain!.request.postData.text)).toMatchObject({ model: 'demo-small', messages: [{ content: PROMPT }] });
    expect(JSON.parse(plain!.response.content.text).choices[0].message.content).toBe(plainAnswer);
    expect(plain!._model).toBe('demo-small');
    expect(streamed!.response.content.mimeType).toMatch(/^text\/event-stream/);
    expect(streamed!.response.content.text).toMatch(/^data: /);
    expect(streamed!.response.content.text).toContain('[DONE]');
  });

  it('format=har of a session recorded without bodies says the bodies were not recorded, and why', async () => {
    const har = (await (await get(`/v1/sessions/${aliceLlm2.id}/export?format=har`, 'carol')).json()) as { log: { entries: Record<string, any>[] } };
    expect(har.log.entries).toHaveLength(1);
    expect(har.log.entries[0]!.response.content.text).toBeUndefined();
    expect(har.log.entries[0]!.response.content.comment).toBe('body not recorded: record.response_body is none');
    expect(har.log.entries[0]!.request.postData).toEqual({ mimeType: 'application/json', text: '', comment: 'body not recorded: record.request_body is none' });
  });

  it('format=asciicast is asciicast v2 of the first streamed answer, each text chunk at its recorded offset', async () => {
    const res = await get(`/v1/sessions/${aliceLlm.id}/export?format=asciicast`, 'carol');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-asciicast; charset=utf-8');
    const [header, ...events] = lines(await res.text()) as [Record<string, unknown>, ...[number, string, string][]];
    expect(header).toMatchObject({ version: 2, width: 80, height: 24, timestamp: expect.any(Number) });
    expect(header.title).toContain('#2');
    for (const e of events) expect(e[1]).toBe('o');
    const times = events.map((e) => e[0]);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    const text = events.map((e) => e[2]).join('');
    expect(text).toBe(`${streamedAnswer.replace(/\n/g, '\r\n')}\r\n`);

    // The recorded offsets: each chunk of the streamed exchange's runs, from the request's record.
    const onDisk = await fileEvents(aliceLlm);
    const requestRecord = onDisk.filter((e) => e.type === 'exchange.request')[1]!;
    const exchangeId = (requestRecord.fields as { exchange: string }).exchange;
    const offsets = onDisk
      .filter((e): e is RecordedEvent<'exchange.chunk'> => e.type === 'exchange.chunk' && (e.fields as { exchange: string }).exchange === exchangeId)
      .flatMap((e) => (e.fields.parts ?? [[0, e.fields.bytes]]).map(([at]) => (e.t + at - requestRecord.t) / 1000));
    const textEvents = events.slice(0, -1);
    expect(textEvents.length).toBeGreaterThan(1);
    for (const [t] of textEvents) expect(offsets).toContain(t);
    expect(new Set(textEvents.map((e) => e[0])).size).toBeGreaterThan(1);
    expect(header.timestamp).toBe(Math.floor((Date.parse(aliceLlm.started_at) + requestRecord.t) / 1000));
  });

  it('format=asciicast&exchange=1 plays a non-streamed answer as one event; unknown or unrecorded answers are 404', async () => {
    const res = await get(`/v1/sessions/${aliceLlm.id}/export?format=asciicast&exchange=1`, 'carol');
    const [, first] = lines(await res.text()) as [unknown, [number, string, string]];
    expect(first[2]).toBe(plainAnswer.replace(/\n/g, '\r\n'));
    const missing = await get(`/v1/sessions/${aliceLlm.id}/export?format=asciicast&exchange=9`, 'carol');
    expect(missing.status).toBe(404);
    const masked = await get(`/v1/sessions/${aliceLlm2.id}/export?format=asciicast&exchange=1`, 'carol');
    expect(masked.status).toBe(404);
    expect(((await masked.json()) as { error: { message: string } }).error.message).toMatch(/not recorded/);
  });

  it('format=jsonl is one self-contained line per recorded event, with its stable type code and no body bytes', async () => {
    const res = await get(`/v1/sessions/${aliceLlm.id}/export?format=jsonl`, 'carol');
    expect(res.headers.get('x-sluice-verify')).toBe('intact');
    const events = lines(await res.text()) as Record<string, unknown>[];
    expect(events).toHaveLength((await fileEvents(aliceLlm)).length);
    for (const e of events) {
      expect(EVENT_TYPES).toContain(e.type);
      expect(e).toMatchObject({ session_id: aliceLlm.id, actor: 'alice', connection_name: 'llm' });
      expect(Date.parse(e.time as string)).toBe(Date.parse(aliceLlm.started_at) + (e.t as number));
      expect(e.payload).toBeUndefined();
    }
    expect(JSON.stringify(events)).not.toContain(PROMPT);
  });

  it('refuses an unknown format', async () => {
    const res = await get(`/v1/sessions/${aliceLlm.id}/export?format=pdf`, 'carol');
    expect(res.status).toBe(400);
  });
});

describe('a tampered session file', () => {
  it('ends the events stream with an error line naming the record, fails verification and is not exported', async () => {
    await sdk('dave').chat.completions.create({ model: 'demo-tamper', messages: [{ role: 'user', content: 'evidence' }] });
    let victim: SessionJson | undefined;
    await vi.waitFor(
      async () => {
        victim = (await json<SessionListJson>('/v1/sessions?user=dave&connection=llm&status=closed', 'carol')).body.sessions[0];
        expect(victim).toBeDefined();
      },
      { timeout: 15_000, interval: 100 },
    );
    const onDisk = await fileEvents(victim!);
    const target = onDisk.find((e) => e.type === 'exchange.response')!;
    const handle = await open(join(dir, victim!.file), 'r+');
    try {
      // A byte inside the record's ciphertext, past its length prefix and nonce.
      const at = target.offset + 4 + 12 + 5;
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, at);
      byte[0] = byte[0]! ^ 0x01;
      await handle.write(byte, 0, 1, at);
    } finally {
      await handle.close();
    }

    const res = await get(`/v1/sessions/${victim!.id}/events`, 'carol');
    expect(res.status).toBe(200);
    const got = lines(await res.text()) as { seq?: number; type: string; error?: { code: string; record: number; offset: number; message: string } }[];
    // Every event of the records before the altered one, then the error naming that record (a position, not a seq).
    expect(got.map((e) => e.seq).slice(0, -1)).toEqual(onDisk.filter((e) => e.record < target.record).map((e) => e.seq));
    expect(got.at(-1)).toEqual({
      type: 'stream.error',
      error: { code: 'ERR_RECORDING_TAMPERED', message: expect.stringContaining(`record ${target.record}`), session: victim!.id, record: target.record, offset: target.offset },
    });

    const detail = await json<SessionDetailJson>(`/v1/sessions/${victim!.id}`, 'carol');
    expect(detail.body.verify.status).toBe('broken');
    expect(detail.body.verify.problems[0]).toMatchObject({ kind: 'decrypt', record: target.record, offset: target.offset });
    expect(detail.body.verify.last_good_seq).toBe(target.record - 1);

    const exported = await get(`/v1/sessions/${victim!.id}/export?format=har`, 'carol');
    expect(exported.status).toBe(409);
    expect(((await exported.json()) as { error: { code: string; record: number } }).error).toMatchObject({ code: 'ERR_RECORDING_TAMPERED', record: target.record });
  });

  it('refuses the events of a file whose header is damaged with 409 before streaming anything', async () => {
    const { body } = await json<SessionListJson>('/v1/sessions?user=dave&connection=llm', 'carol');
    const handle = await open(join(dir, body.sessions[0]!.file), 'r+');
    try {
      await handle.write(Buffer.from('XX'), 0, 2, 0);
    } finally {
      await handle.close();
    }
    const res = await get(`/v1/sessions/${body.sessions[0]!.id}/events`, 'carol');
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'ERR_RECORDING_TAMPERED', message: expect.stringMatching(/bad magic/) });
  });
});
