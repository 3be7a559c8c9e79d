/**
 * Recording through the real gateway (`buildApp`, listening on 127.0.0.1) with the real test IdP and the
 * demo model server: the openai SDK calls the direct proxy, and the test reads what landed on disk.
 * Storage faults are injected into the recording's file operations (the tests run as root, so a
 * read-only directory would not stop a write).
 */
import { createHash, createPublicKey } from 'node:crypto';
import { createServer, request } from 'node:http';
import { readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { buildApp } from '../../server/app.js';
import { validateConfig } from '../../server/config/load.js';
import type { RunningModelServer } from '../../server/demo/model-server.js';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { nodeRecordingIo, type RecordingFile, type RecordingIo } from '../../server/recording/file-io.js';
import { keyRingFromSettings } from '../../server/recording/key-ring.js';
import { gatewayFixture, modelConnection, UPSTREAM_API_KEY, type TestGateway } from '../helpers/gateway.js';
import { signToken, type TestIdp } from '../helpers/oidc.js';
import { readStoredSession, verifyStoredSession } from '../helpers/stored-sessions.js';

const PROMPT = 'Summarise the quarterly numbers for ACME-314159';

const gateways = gatewayFixture({ model: { chunks: 6, chunkDelayMs: 15 } });
let idp: TestIdp;
let aliceToken: string;

beforeAll(async () => {
  idp = gateways.idp;
  aliceToken = await signToken(idp.signingKey, idp.claimsFor('alice'));
});

/** A fault the injected file operations raise, by errno code; null lets everything through. */
interface FaultSwitch {
  code: string | null;
  /** With a fault set, write this many bytes of the next writev before failing (a torn write). */
  tornBytes?: number;
}

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected fault`), { code });
}

/** Node's fs with a switch: while `code` is set, creating, writing and syncing fail with it. */
function faultyIo(fault: FaultSwitch): RecordingIo {
  const wrapFile = (file: RecordingFile): RecordingFile => ({
    writev: async (buffers) => {
      if (fault.code === null) return file.writev(buffers);
      if (fault.tornBytes !== undefined && fault.tornBytes > 0) {
        const torn = Buffer.concat(buffers).subarray(0, fault.tornBytes);
        fault.tornBytes = 0;
        await file.writev([torn]);
      }
      throw errno(fault.code);
    },
    sync: async () => {
      if (fault.code !== null) throw errno(fault.code);
      return file.sync();
    },
    truncate: async (length) => {
      if (fault.code !== null) throw errno(fault.code);
      return file.truncate(length);
    },
    close: () => file.close(),
  });
  return {
    mkdir: (path) => nodeRecordingIo.mkdir(path),
    create: async (path) => {
      if (fault.code !== null) throw errno(fault.code);
      return wrapFile(await nodeRecordingIo.create(path));
    },
    remove: (path) => nodeRecordingIo.remove(path),
  };
}

interface Gateway {
  url: string;
  app: FastifyInstance;
  dir: string;
  masterKey: string;
  model: RunningModelServer;
  sessions: TestGateway['sessions'];
}

async function startGateway(options: { record?: Record<string, unknown>; io?: RecordingIo; upstream?: string } = {}): Promise<Gateway> {
  const gw = await gateways.start({
    connections: ({ model }) => [modelConnection({ url: options.upstream ?? model.url }, options.record === undefined ? {} : { record: options.record })],
    config: { roles: { auditor: ['security'] }, storage: { fsync: 'batch', fsync_interval: '50ms' } },
    ...(options.io === undefined ? {} : { app: { recordingIo: options.io } }),
  });
  return { url: gw.url, app: gw.app, dir: gw.storageDir, masterKey: gw.masterKey, model: gw.model, sessions: gw.sessions };
}

function openai(gw: Gateway): OpenAI {
  return new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: aliceToken, maxRetries: 0 });
}

async function eventsOf(gw: Gateway, file: string): Promise<RecordedEvent[]> {
  const ring = keyRingFromSettings({ master_key: gw.masterKey })!;
  return readStoredSession(gw.dir, file, ring);
}

describe('recording through the direct proxy', () => {
  it('records a non-streamed and a streamed call in one session: request, response, timed chunks, end with model and usage; sealed and signed', async () => {
    const gw = await startGateway({ record: { request_body: 'raw', response_body: 'raw' } });
    const client = openai(gw);

    const completion = await client.chat.completions.create({ model: 'demo-small', messages: [{ role: 'user', content: PROMPT }] });
    const answer = completion.choices[0]!.message.content!;
    let streamed = '';
    const stream = await client.chat.completions.create({
      model: 'demo-large',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: PROMPT }],
    });
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
    expect(streamed.length).toBeGreaterThan(0);

    const publicKey = (await gw.app.inject({ method: 'GET', url: '/v1/audit/public-key' })).json() as { algorithm: string; public_key_pem: string };
    expect(publicKey.algorithm).toBe('Ed25519');
    await gw.app.close(); // seals the proxy session

    const [session, ...others] = await gw.sessions();
    expect(others).toEqual([]);
    expect(session).toMatchObject({
      user: 'alice',
      connection: 'llm',
      via: 'proxy',
      status: 'closed',
      models: ['demo-small', 'demo-large'],
      lastStatus: 200,
      counters: { requests: 2, errors: 0, denied: 0 },
    });
    expect(session!.tokens.total).toBeGreaterThan(0);
    expect(session!.tokens.total).toBe(session!.tokens.prompt + session!.tokens.completion);
    expect(session!.file).toMatch(/^sessions\/\d{4}\/\d{2}\/\d{2}\/ses_[0-9a-f]{32}\.rec$/);

    const events = await eventsOf(gw, session!.file);
    const types = events.map((e) => e.type);
    expect(types[0]).toBe('session.start');
    expect(types.slice(-2)).toEqual(['session.end', 'session.checkpoint']);
    expect(events[0]!.fields).toMatchObject({ user: { sub: 'alice', groups: ['ml-eng'] }, connection: { name: 'llm', type: 'http' }, via: 'proxy' });

    const requests = events.filter((e): e is RecordedEvent<'exchange.request'> => e.type === 'exchange.request');
    expect(requests).toHaveLength(2);
    expect(requests[0]!.fields).toMatchObject({ method: 'POST', path: '/v1/chat/completions', body: { capture: 'raw' } });
    // The agent's own token is recorded as present, never with its value.
    expect(requests[0]!.fields.headers.authorization).toBe('[removed]');
    expect(JSON.parse(requests[0]!.payload!.toString())).toMatchObject({ model: 'demo-small', messages: [{ content: PROMPT }] });

    const [plainEnd, streamEnd] = events.filter((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end');
    expect(plainEnd!.fields).toMatchObject({ status: 200, complete: true, model: 'demo-small', finish_reason: 'stop' });
    expect(plainEnd!.fields.usage?.total_tokens).toBe(completion.usage?.total_tokens);
    expect(streamEnd!.fields).toMatchObject({ status: 200, complete: true, model: 'demo-large', finish_reason: 'stop' });
    expect(streamEnd!.fields.usage?.completion_tokens).toBeGreaterThan(0);
    expect(streamEnd!.fields.ttfb_ms).toBeGreaterThanOrEqual(0);
    expect(streamEnd!.fields.first_chunk_ms).toBeGreaterThanOrEqual(streamEnd!.fields.ttfb_ms!);

    // The streamed answer's chunks: bytes that concatenate to what the SDK parsed, at increasing offsets.
    const streamX = streamEnd!.fields.exchange;
    const chunks = events.filter((e): e is RecordedEvent<'exchange.chunk'> => e.type === 'exchange.chunk' && (e.fields as { exchange?: string }).exchange === streamX);
    expect(chunks.length).toBeGreaterThan(0);
    const offsets = chunks.flatMap((c) => (c.fields.parts ?? [[0, c.fields.bytes]]).map(([dt]) => c.t + dt));
    expect(offsets.length).toBeGreaterThanOrEqual(6);
    for (let i = 1; i < offsets.length; i++) expect(offsets[i]!).toBeGreaterThanOrEqual(offsets[i - 1]!);
    expect(offsets.at(-1)! - offsets[0]!).toBeGreaterThanOrEqual(5 * 15 - 10);
    const sse = Buffer.concat(chunks.map((c) => c.payload!)).toString();
    const text = sse
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => (JSON.parse(l.slice(6)) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '')
      .join('');
    expect(text).toBe(streamed);

    // No plaintext on disk: neither the prompt nor either answer.
    const bytes = await readFile(join(gw.dir, session!.file));
    expect(bytes.includes(Buffer.from(PROMPT))).toBe(false);
    expect(bytes.includes(Buffer.from(answer.slice(0, 24)))).toBe(false);
    expect(bytes.includes(Buffer.from(streamed.slice(0, 24)))).toBe(false);

    const ring = keyRingFromSettings({ master_key: gw.masterKey })!;
    const verdict = await verifyStoredSession(gw.dir, session!.file, ring, { publicKey: publicKey.public_key_pem, expect: { records: session!.records!, finalHash: session!.finalHash! } });
    expect(verdict).toMatchObject({ ok: true, status: 'intact', records: session!.records!, lastGoodEvent: events.length - 1, problems: [] });
    // An answer's head, runs and end share a record: fewer records than events, each event with its own seq.
    expect(verdict.records).toBeLessThan(events.length);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i));
    const plainX = plainEnd!.fields.exchange;
    const ofPlain = events.filter((e) => (e.fields as { exchange?: string }).exchange === plainX);
    expect(ofPlain.map((e) => e.type)).toEqual(['exchange.request', 'exchange.response', 'exchange.chunk', 'exchange.end']);
    expect(new Set(ofPlain.slice(1).map((e) => e.record)).size).toBe(1);
    expect(ofPlain[0]!.record).toBeLessThan(ofPlain[1]!.record);
  });

  it('keeps bodies as sent under the default `masked` setting on a connection without masking profiles, and the injected key out of the answer', async () => {
    const gw = await startGateway();
    const client = openai(gw);
    const stream = await client.chat.completions.create({ model: 'demo', stream: true, messages: [{ role: 'user', content: PROMPT }] });
    let received = '';
    for await (const chunk of stream) received += chunk.choices[0]?.delta?.content ?? '';
    await gw.app.close();

    const [session] = await gw.sessions();
    const events = await eventsOf(gw, session!.file);
    const request = events.find((e): e is RecordedEvent<'exchange.request'> => e.type === 'exchange.request')!;
    expect(JSON.parse(request.payload!.toString())).toMatchObject({ model: 'demo', stream: true, messages: [{ role: 'user', content: PROMPT }] });
    expect(request.fields.body).toMatchObject({ capture: 'raw' });
    const down = Buffer.concat(events.filter((e) => e.type === 'exchange.chunk' && (e as RecordedEvent<'exchange.chunk'>).fields.dir === 'down').map((c) => c.payload!)).toString();
    const text = [...down.matchAll(/^data: (\{.*\})$/gm)].map((m) => (JSON.parse(m[1]!) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '').join('');
    expect(text).toBe(received);
    expect(down).not.toContain(UPSTREAM_API_KEY);
    const end = events.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!;
    expect(end.fields.model).toBe('demo');
    // kept: its digest, if any, names no reason for an absence
    expect(end.fields.response_body?.not_kept).toBeUndefined();
  });

  it('keeps only sizes, times and a SHA-256 under `none`, and says why the bodies are absent', async () => {
    const gw = await startGateway({ record: { request_body: 'none', response_body: 'none' } });
    const stream = await openai(gw).chat.completions.create({ model: 'demo', stream: true, messages: [{ role: 'user', content: PROMPT }] });
    for await (const _ of stream) void _;
    await gw.app.close();

    const [session] = await gw.sessions();
    const events = await eventsOf(gw, session!.file);
    const request = events.find((e): e is RecordedEvent<'exchange.request'> => e.type === 'exchange.request')!;
    expect(request.payload).toBeUndefined();
    expect(request.fields.body).toMatchObject({ capture: 'digest', sha256: expect.stringMatching(/^[0-9a-f]{64}$/), not_kept: 'record.request_body is none' });
    expect(events.some((e) => e.type === 'exchange.chunk')).toBe(false);
    const end = events.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!;
    expect(end.fields.response_body).toEqual({ bytes: end.fields.bytes_down, sha256: expect.stringMatching(/^[0-9a-f]{64}$/), not_kept: 'record.response_body is none' });
  });

  it("names each answer by the SHA-256 of the bytes its caller got, whether it came in one chunk or in many", async () => {
    const gw = await startGateway({ record: { request_body: 'none', response_body: 'none' } });
    const call = async (stream: boolean): Promise<Buffer> => {
      const res = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${aliceToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'demo', stream, messages: [{ role: 'user', content: PROMPT }] }),
      });
      expect(res.status).toBe(200);
      return Buffer.from(await res.arrayBuffer());
    };
    const whole = await call(false);
    const streamed = await call(true);
    await gw.app.close();

    const [session] = await gw.sessions();
    const ends = (await eventsOf(gw, session!.file)).filter((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end');
    const digest = (bytes: Buffer) => ({ bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), not_kept: 'record.response_body is none' });
    expect(ends.map((e) => e.fields.response_body)).toEqual([digest(whole), digest(streamed)]);
    // The streamed answer came in several chunks (six paced events and the end), the plain one in one.
    expect(streamed.toString().match(/^data: /gm)!.length).toBeGreaterThan(2);
  });

  it('groups calls per identity and connection; another user gets a session of their own, with a refusal recorded', async () => {
    const gw = await startGateway();
    await openai(gw).models.list();
    await openai(gw).models.list();
    // bob is not in ml-eng: his call is refused, and the refusal is on record.
    const bob = await signToken(idp.signingKey, idp.claimsFor('bob'));
    const refused = await fetch(`${gw.url}/v1/proxy/llm/v1/models?api_key=leaked`, { headers: { authorization: `Bearer ${bob}` } });
    expect(refused.status).toBe(403);
    await gw.app.close();
    const sessions = await gw.sessions();
    expect(sessions.map((s) => [s.user, s.counters.requests, s.counters.denied]).sort()).toEqual([
      ['alice', 2, 0],
      ['bob', 1, 1],
    ]);
    const bobs = await eventsOf(gw, sessions.find((s) => s.user === 'bob')!.file);
    // Recorded like any request (headers with the credential removed, the query's key too), then refused with its status.
    const request = bobs.find((e): e is RecordedEvent<'exchange.request'> => e.type === 'exchange.request')!;
    expect(request.fields).toMatchObject({ method: 'GET', path: '/v1/models', query: 'api_key=[removed]', decision: { action: 'none' } });
    expect(request.fields.headers.authorization).toBe('[removed]');
    const error = bobs.find((e): e is RecordedEvent<'exchange.error'> => e.type === 'exchange.error')!;
    expect(error.fields).toMatchObject({ code: 'ERR_CONNECTION_FORBIDDEN', exchange: request.fields.exchange });
    const end = bobs.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!;
    expect(end.fields).toMatchObject({ exchange: request.fields.exchange, status: 403, complete: true, bytes_up: 0 });
    expect(end.seq).toBeGreaterThan(error.seq);
  });
});

describe('re-sends', () => {
  it('are labelled only by callers who may read the recording they re-send from', async () => {
    const gw = await startGateway();
    await openai(gw).chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'original' }] });
    const [original] = await gw.sessions();
    const erin = await signToken(idp.signingKey, { ...idp.claimsFor('alice'), sub: 'erin', email: 'erin@example.com' });
    const carol = await signToken(idp.signingKey, { ...idp.claimsFor('carol'), groups: ['security', 'ml-eng'] });
    const resend = (token: string, ref: string) =>
      fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-sluice-resend-of': ref },
        body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'again' }] }),
      });
    const before = gw.model.requests.length;

    // Another user, and the owner herself (users do not read recorded contents unless audit.users_read_own).
    for (const token of [erin, aliceToken]) {
      const refused = await resend(token, `${original!.id}#1`);
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('ERR_FORBIDDEN');
    }
    const unknown = await resend(carol, `ses_${'0'.repeat(32)}#1`);
    expect(unknown.status).toBe(404);
    expect(gw.model.requests.length).toBe(before);

    // An auditor may: the call goes through, in a session labelled with what it re-sends.
    expect((await resend(carol, `${original!.id}#1`)).status).toBe(200);
    expect(gw.model.requests.length).toBe(before + 1);
    await gw.app.close();
    const labelled = (await gw.sessions()).filter((s) => s.resendOf !== undefined);
    expect(labelled.map((s) => [s.user, s.resendOf])).toEqual([['carol', `${original!.id}#1`]]);
  });
});

describe('recording is fail-closed', () => {
  it('refuses with 503 naming the cause, forwards nothing, turns /readyz unready, and recovers by itself', async () => {
    const fault: FaultSwitch = { code: null };
    const gw = await startGateway({ io: faultyIo(fault), record: { request_body: 'raw', response_body: 'raw' } });
    const client = openai(gw);
    await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'first' }] });
    expect((await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    const before = gw.model.requests.length;

    // The disk fills up mid-session, and the next write tears half a record onto the disk before failing.
    fault.code = 'ENOSPC';
    fault.tornBytes = 40;
    const refused = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${aliceToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'second' }] }),
    });
    expect(refused.status).toBe(503);
    const error = ((await refused.json()) as { error: { code: string; message: string; cause: string } }).error;
    expect(error.code).toBe('ERR_RECORDING_UNAVAILABLE');
    expect(error.message).toContain('disk full (ENOSPC)');
    expect(gw.model.requests.length).toBe(before);

    const unready = await gw.app.inject({ method: 'GET', url: '/readyz' });
    expect(unready.statusCode).toBe(503);
    expect(unready.json().checks.recording).toMatchObject({ ok: false, message: expect.stringContaining('ENOSPC') });

    // Storage recovers: readiness probes find it writable, and calls flow and are recorded again.
    fault.code = null;
    const ready = await gw.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    const third = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'third' }] });
    expect(third.choices[0]!.message.content).toBeTruthy();
    expect(gw.model.requests.length).toBe(before + 1);
    await gw.app.close();

    // The torn bytes were cut before the next record: the file is whole, chained and sealed.
    const [session] = await gw.sessions();
    const events = await eventsOf(gw, session!.file);
    const bodies = events.filter((e) => e.type === 'exchange.request').map((e) => JSON.parse(e.payload!.toString()).messages[0].content);
    expect(bodies).toEqual(['first', 'third']);
    const publicKey = createPublicKey(await readFile(join(gw.dir, 'signing-key.pem')));
    const verdict = await verifyStoredSession(gw.dir, session!.file, keyRingFromSettings({ master_key: gw.masterKey })!, { publicKey });
    expect(verdict.problems).toEqual([]);
  });

  it('sends a streamed request body upstream chunk by chunk, each only once it is recorded', async () => {
    // An upstream that keeps every body byte it is sent, even of a request that never completes.
    let received = '';
    const upstream = createServer((req, res) => {
      req.on('data', (chunk: Buffer) => (received += chunk.toString()));
      req.on('end', () => res.end('{}'));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
    const fault: FaultSwitch = { code: null };
    const gw = await startGateway({ io: faultyIo(fault), record: { request_body: 'raw' }, upstream: `http://127.0.0.1:${(upstream.address() as { port: number }).port}` });

    const { port } = new URL(gw.url);
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/proxy/llm/v1/upload', headers: { authorization: `Bearer ${aliceToken}`, 'transfer-encoding': 'chunked' } });
    const answered = new Promise<number>((resolve) => {
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(-1));
    });
    req.write('first-chunk;');
    await expect.poll(() => received, { timeout: 5000 }).toBe('first-chunk;');
    // The disk fails: the next chunk cannot be recorded, so it must never reach the upstream.
    fault.code = 'ENOSPC';
    req.write('second-chunk-unrecorded;');
    req.end();
    expect(await answered).not.toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect(received).toBe('first-chunk;');
  });

  it('refuses a new session when its file cannot be created (I/O error), then opens one once the disk is back', async () => {
    const fault: FaultSwitch = { code: 'EIO' };
    const gw = await startGateway({ io: faultyIo(fault) });
    const before = gw.model.requests.length;
    const refused = await fetch(`${gw.url}/v1/proxy/llm/v1/models`, { headers: { authorization: `Bearer ${aliceToken}` } });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain('I/O error (EIO)');
    expect(gw.model.requests.length).toBe(before);
    expect((await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);

    fault.code = null;
    const ok = await fetch(`${gw.url}/v1/proxy/llm/v1/models`, { headers: { authorization: `Bearer ${aliceToken}` } });
    expect(ok.status).toBe(200);
    expect((await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    await gw.app.close();
    const sessions = await gw.sessions();
    expect(sessions.map((s) => [s.status, s.counters.requests])).toEqual([['closed', 1]]);
    // No stray file from the refused attempt.
    const files = await readdir(join(gw.dir, 'sessions'), { recursive: true });
    expect(files.filter((f) => f.endsWith('.rec'))).toHaveLength(1);
  });

  it('refuses to start with connections but no master key, naming the setting', async () => {
    const config = validateConfig({
      identity: { issuer: idp.issuer, audience: idp.audience, cli_client_id: idp.cliClientId },
      storage: { dir: join(tmpdir(), 'sluice-never-created') },
      connections: [{ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:9', allow_groups: ['ml-eng'] }],
    });
    await expect(buildApp({ config, logger: false })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      details: { problems: [expect.stringMatching(/^storage\.master_key: is required when connections are configured/)] },
    });
  });
});
