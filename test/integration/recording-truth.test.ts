/**
 * Recordings that tell the whole truth: every request that reaches a connection leaves a record (refused
 * ones with their headers, body and status), and every view of a session (the records on disk, the events
 * API, `sessions show`, HAR, JSONL, `replay --json` and the TUI's model) tells the same status, counts and
 * digests. A real gateway, real sockets, the test upstream behind it; the views are read as a CLI reads them.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { renderSessionDetail } from '../../cli/commands/sessions.js';
import { sessionJson as replayJson } from '../../cli/replay/replay-json.js';
import { SessionApi } from '../../cli/replay/session-api.js';
import { TunnelClient } from '../../cli/tunnel/tunnel-client.js';
import type { EventFields, RecordedEvent } from '../../server/recording/event-types.js';
import { keyRingFromSettings } from '../../server/recording/key-ring.js';
import { sessionDetailSchema, sessionListSchema, type SessionJson } from '../../shared/sessions-api.js';
import { gatewayFixture, httpOver, type TestGateway } from '../helpers/gateway.js';
import { readStoredSession } from '../helpers/stored-sessions.js';
import { startTestUpstream, type TestUpstream } from '../helpers/upstream.js';

const gateways = gatewayFixture();

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
const EMPTY_SHA256 = sha256('');

let upstream: TestUpstream;
let gw: TestGateway;
const tokens: Record<'alice' | 'bob' | 'carol', string> = { alice: '', bob: '', carol: '' };

beforeAll(async () => {
  upstream = await startTestUpstream();
  gw = await gateways.start({
    config: {
      connections: [
        // Default recording (`masked`, no profile): bodies are kept as size and SHA-256, both ways.
        { name: 'files', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], max_body: 4096, response_timeout: '1s' },
        { name: 'raw', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], record: { request_body: 'raw', response_body: 'raw' } },
        { name: 'masked', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], masking: ['pii'] },
      ],
      masking_profiles: { pii: { detectors: ['email'] } },
      policies: [
        { name: 'no-forbidden-model', when: 'request.json.?model.orValue("") == "forbidden"', action: 'deny', message: 'The model "forbidden" is not allowed' },
        { name: 'frontier-review', when: 'request.json.?model.orValue("") == "frontier"', action: 'review', reviewers: ['ml-leads'], timeout: '10m' },
        { name: 'brief-review', when: 'request.json.?model.orValue("") == "brief"', action: 'review', reviewers: ['ml-leads'], timeout: '300ms' },
      ],
    },
  });
  for (const user of ['alice', 'bob', 'carol'] as const) tokens[user] = await gw.token(user);
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

interface Answer {
  status: number;
  body: string;
}

/** A call on the direct proxy as alice, with fetch (what an agent's HTTP client does). */
async function call(connection: string, path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await fetch(`${gw.url}/v1/proxy/${connection}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: { authorization: `Bearer ${tokens.alice}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    ...(init.body === undefined ? {} : { body: init.body }),
  });
  return { status: res.status, body: await res.text() };
}

/** A request written as given (Node's client sends the target unresolved); `continue` waits for 100 Continue before any body. */
function rawCall(path: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port: gw.port, method: options.method ?? 'GET', path: `/v1/proxy/files${path}`, headers: { authorization: `Bearer ${tokens.alice}`, ...options.headers } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
          req.destroy();
        });
      },
    );
    req.on('error', reject);
    req.flushHeaders();
  });
}

/** A chat request body; the model decides what policy does with it. */
function chat(model: string, content: string, stream = false): string {
  return JSON.stringify({ model, messages: [{ role: 'user', content }], ...(stream ? { stream: true } : {}) });
}

async function api<T>(user: keyof typeof tokens, path: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: T; text: string }> {
  const res = await fetch(`${gw.url}${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${tokens[user]}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const text = await res.text();
  let body: unknown = undefined;
  try {
    body = JSON.parse(text);
  } catch {
    // NDJSON and HAR are parsed by the caller.
  }
  return { status: res.status, body: body as T, text };
}

/** Holds a `frontier` call until bob rejects its review; resolves with the refusal alice got. */
async function rejected(connection: string, body: string): Promise<Answer> {
  const answer = call(connection, '/v1/chat/completions', { body });
  let id: string | undefined;
  await vi.waitFor(
    async () => {
      const { body: list } = await api<{ reviews: { id: string; rule: string }[] }>('bob', '/v1/reviews?status=pending');
      id = list.reviews.find((r) => r.rule === 'frontier-review')?.id;
      expect(id).toBeDefined();
    },
    { timeout: 10_000, interval: 50 },
  );
  expect((await api('bob', `/v1/reviews/${id}/reject`, { method: 'POST', body: { reason: 'use a smaller model' } })).status).toBe(200);
  return answer;
}

/** Alice's session on a connection, once the index has counted `requests` exchanges. */
async function sessionOf(connection: string, requests: number): Promise<SessionJson> {
  let found: SessionJson | undefined;
  await vi.waitFor(
    async () => {
      const { body } = await api<unknown>('carol', `/v1/sessions?user=alice&connection=${connection}`);
      found = sessionListSchema.parse(body).sessions[0];
      expect(found?.counters.requests).toBe(requests);
    },
    { timeout: 10_000, interval: 50 },
  );
  return found!;
}

/** How many exchanges alice's session on a connection has recorded so far (0 before it opens). */
async function requestsSoFar(connection: string): Promise<number> {
  const { body } = await api<unknown>('carol', `/v1/sessions?user=alice&connection=${connection}`);
  return sessionListSchema.parse(body).sessions[0]?.counters.requests ?? 0;
}

/** The session's records, read from its file on disk with the master key. */
async function recordsOf(session: SessionJson): Promise<RecordedEvent[]> {
  const ring = keyRingFromSettings({ master_key: gw.config.storage.master_key })!;
  return readStoredSession(gw.config.storage.dir, session.file, ring);
}

/** What the records say of each exchange, in the order exchanges first appear. */
interface Truth {
  id: string;
  status: number;
  complete: boolean;
  bytes_up: number;
  bytes_down: number;
  request_body: { bytes: number; sha256: string } | null;
  response_body: { bytes: number; sha256: string } | null;
  error: string | null;
}

function truthOf(records: readonly RecordedEvent[]): Truth[] {
  const byId = new Map<string, Truth>();
  for (const e of records) {
    const id = (e.fields as { exchange?: string }).exchange;
    if (id === undefined) continue;
    const t = byId.get(id) ?? { id, status: -1, complete: false, bytes_up: -1, bytes_down: -1, request_body: null, response_body: null, error: null };
    byId.set(id, t);
    if (e.type === 'exchange.end') {
      const f = e.fields as EventFields['exchange.end'];
      Object.assign(t, { status: f.status, complete: f.complete, bytes_up: f.bytes_up, bytes_down: f.bytes_down, request_body: f.request_body ?? null, response_body: f.response_body ?? null });
    }
    if (e.type === 'exchange.error') t.error = (e.fields as EventFields['exchange.error']).code;
  }
  return [...byId.values()];
}

const ofType = <T extends RecordedEvent['type']>(records: readonly RecordedEvent[], type: T, exchange: string): RecordedEvent<T> | undefined =>
  records.find((e): e is RecordedEvent<T> => e.type === type && (e.fields as { exchange?: string }).exchange === exchange);

describe('every view tells what the records say', () => {
  it('allowed, denied, rejected, cut off, upstream failures, refused paths and sizes: one status, count and digest each', async () => {
    const allowedBody = chat('m', 'hello there');
    const deniedBody = chat('forbidden', 'please');
    const rejectedBody = chat('frontier', 'a long question for the frontier model');

    expect((await call('files', '/v1/chat/completions', { body: allowedBody })).status).toBe(200);
    const denied = await call('files', '/v1/chat/completions', { body: deniedBody });
    expect([denied.status, JSON.parse(denied.body).error.code]).toEqual([403, 'ERR_POLICY_DENIED']);
    const refused = await rejected('files', rejectedBody);
    expect([refused.status, JSON.parse(refused.body).error.code]).toEqual([403, 'ERR_REVIEW_REJECTED']);

    // The client reads the first event of a stream and hangs up.
    upstream.holdStreams();
    const ac = new AbortController();
    const stream = await fetch(`${gw.url}/v1/proxy/files/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' },
      body: chat('m', 'stream this', true),
      signal: ac.signal,
    });
    expect(stream.status).toBe(200);
    await stream.body!.getReader().read();
    ac.abort();
    await vi.waitFor(() => expect(upstream.requests.filter((r) => r.url === '/v1/chat/completions').length).toBe(2));

    // The upstream resets mid-answer, then one never answers (1 s response timeout).
    await expect(call('files', '/reset')).rejects.toThrow();
    expect((await call('files', '/hang')).status).toBe(504);
    // Refused by path hygiene and by size (declared, never sent: the caller waits for 100 Continue).
    const path = await rawCall('/..%2fsecret.txt?api_key=leaked');
    expect([path.status, JSON.parse(path.body).error.code]).toEqual([400, 'ERR_PATH_REFUSED']);
    const big = await rawCall('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '5000', expect: '100-continue' } });
    expect([big.status, JSON.parse(big.body).error.code]).toEqual([413, 'ERR_BODY_TOO_LARGE']);
    upstream.release();

    await sessionOf('files', 8);
    // Sealed by a restart, so exports come from a signed, intact file.
    await gw.stopApp();
    await gw.startApp();
    const session = await sessionOf('files', 8);
    expect(session.status).toBe('closed');
    const records = await recordsOf(session);
    const truth = truthOf(records);

    // The records themselves: each exchange has a request, an end, and the status its caller got.
    expect(truth.map((t) => [t.status, t.complete, t.error])).toEqual([
      [200, true, null],
      [403, true, 'ERR_POLICY_DENIED'],
      [403, true, 'ERR_REVIEW_REJECTED'],
      [200, false, null],
      [200, false, 'ERR_UPSTREAM_UNAVAILABLE'],
      [504, true, 'ERR_UPSTREAM_TIMEOUT'],
      [400, true, 'ERR_PATH_REFUSED'],
      [413, true, 'ERR_BODY_TOO_LARGE'],
    ]);
    for (const t of truth) expect(ofType(records, 'exchange.request', t.id), `request record of ${t.id}`).toBeDefined();
    const [allowed, deniedX, rejectedX, , , , pathX, bigX] = truth as [Truth, Truth, Truth, Truth, Truth, Truth, Truth, Truth];
    // Digests name the bodies that were sent (never the SHA-256 of nothing), the same in request and end.
    expect(allowed.request_body).toEqual({ bytes: Buffer.byteLength(allowedBody), sha256: sha256(allowedBody) });
    // kept as sent (no masking profile applies), and named by the same digest
    const allowedRequest = ofType(records, 'exchange.request', allowed.id)!;
    expect(allowedRequest.fields.body).toMatchObject({ capture: 'raw', sha256: sha256(allowedBody) });
    expect(allowedRequest.payload?.toString()).toBe(allowedBody);
    expect(deniedX.request_body).toEqual({ bytes: Buffer.byteLength(deniedBody), sha256: sha256(deniedBody) });
    expect([deniedX.bytes_up, rejectedX.bytes_up]).toEqual([Buffer.byteLength(deniedBody), Buffer.byteLength(rejectedBody)]);
    expect(rejectedX.request_body).toEqual({ bytes: Buffer.byteLength(rejectedBody), sha256: sha256(rejectedBody) });
    expect(truth.every((t) => t.request_body?.sha256 !== EMPTY_SHA256)).toBe(true);
    // A refused request is recorded like any other: headers (credential removed), decision, body.
    const deniedRequest = ofType(records, 'exchange.request', deniedX.id)!.fields;
    expect(deniedRequest).toMatchObject({ method: 'POST', path: '/v1/chat/completions', decision: { action: 'deny', rule: 'no-forbidden-model' } });
    expect(deniedRequest.headers).toMatchObject({ authorization: '[removed]', 'content-type': 'application/json' });
    expect(ofType(records, 'exchange.request', rejectedX.id)!.fields.decision).toEqual({ action: 'review', rule: 'frontier-review' });
    // The refused path is kept as it was sent (its credential removed); the refused size as declared, never read.
    expect(ofType(records, 'exchange.request', pathX.id)!.fields).toMatchObject({ path: '/..%2fsecret.txt', query: 'api_key=[removed]', decision: { action: 'none' } });
    expect(ofType(records, 'exchange.request', bigX.id)!.fields.body).toEqual({ capture: 'digest', unread: true, bytes: 5000 });
    expect(bigX.bytes_up).toBe(0);

    // The index counts what the records hold.
    expect(session.counters).toMatchObject({
      requests: 8,
      denied: 2,
      errors: 4,
      held: 1,
      bytes_up: truth.reduce((n, t) => n + t.bytes_up, 0),
      bytes_down: truth.reduce((n, t) => n + t.bytes_down, 0),
    });

    // The events API: the same records, line for line.
    const events = await api<never>('carol', `/v1/sessions/${session.id}/events?payload=false`);
    const lines = events.text.trim().split('\n').map((l) => JSON.parse(l) as { type: string; exchange?: string } & Record<string, unknown>);
    expect(lines.filter((l) => l.type === 'exchange.end').map((l) => [l.exchange, l.status, l.complete, l.request_body ?? null, l.response_body ?? null])).toEqual(
      truth.map((t) => [t.id, t.status, t.complete, t.request_body, t.response_body]),
    );

    // `sessions show` (the API's detail and its plain rendering).
    const detail = sessionDetailSchema.parse((await api<unknown>('carol', `/v1/sessions/${session.id}`)).body);
    expect(detail.verify.status).toBe('intact');
    expect(
      detail.exchanges!.map((x) => ({
        id: x.id,
        status: x.status,
        complete: x.complete,
        bytes_up: x.bytes_up,
        bytes_down: x.bytes_down,
        request_body: x.request_body,
        response_body: x.response_body,
        error: x.error?.code ?? null,
      })),
    ).toEqual(truth);
    const shown = renderSessionDetail(detail);
    expect(shown).toContain(`requests:    8 (4 errors, 2 denied, 1 held, 0 masked)`);
    for (const [i, t] of truth.entries()) {
      const status = `${t.status}${t.complete ? '' : ' incomplete'}`;
      expect(shown).toMatch(new RegExp(`#${i + 1}  \\S+ \\S+  ${status}  `));
    }

    // HAR: one entry per exchange, with its status, a comment when the answer was cut off, and the digests.
    const har = (await api<{ log: { entries: Record<string, any>[] } }>('carol', `/v1/sessions/${session.id}/export?format=har`)).body;
    expect(har.log.entries.map((e) => e._exchange)).toEqual(truth.map((t) => t.id));
    for (const [i, t] of truth.entries()) {
      const e = har.log.entries[i]!;
      expect(e.response.status, `HAR status of #${i + 1}`).toBe(t.status);
      expect(e.response.content.size).toBe(t.bytes_down);
      expect(e._request_body ?? null).toEqual(t.request_body);
      expect(e._response_body ?? null).toEqual(t.response_body);
      if (t.complete) expect(e.comment).toBeUndefined();
      else expect(e.comment).toMatch(/^the answer was cut off after \d+ bytes: /);
    }
    expect(har.log.entries[3]!.comment).toMatch(/the caller closed the connection$/);
    expect(har.log.entries[4]!.comment).toMatch(/ERR_UPSTREAM_UNAVAILABLE$/);
    expect(har.log.entries[1]!.request.headers).toContainEqual({ name: 'authorization', value: '[removed]' });
    expect(har.log.entries[1]!.response.content).toMatchObject({ mimeType: 'application/json', comment: 'answered by the gateway: ERR_POLICY_DENIED' });
    expect(har.log.entries[7]!.request.postData.comment).toBe('refused before the body arrived (5000 bytes declared): never read');

    // JSONL for SIEMs: the same ends.
    const jsonl = (await api<never>('carol', `/v1/sessions/${session.id}/export?format=jsonl`)).text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(jsonl.filter((l) => l.type === 'exchange.end').map((l) => [l.exchange, l.status, l.complete, l.bytes_up, l.bytes_down])).toEqual(
      truth.map((t) => [t.id, t.status, t.complete, t.bytes_up, t.bytes_down]),
    );

    // `replay --json` and the TUI's model it is built from: as the CLI loads a session.
    const replay = replayJson(await new SessionApi({ gateway: gw.url, token: tokens.carol }).load(session.id)) as {
      session: Record<string, unknown>;
      exchanges: Record<string, any>[];
    };
    expect(replay.session).toMatchObject({ requests: session.counters.requests, denied: session.counters.denied, held: session.counters.held });
    expect(
      replay.exchanges.map((x) => ({
        id: x.id,
        status: x.status,
        complete: x.complete,
        bytes_up: x.bytes_up,
        bytes_down: x.bytes_down,
        request_body: x.request.digest,
        response_body: x.response.digest,
        error: x.error?.code ?? null,
      })),
    ).toEqual(truth);
    expect(replay.exchanges[1]!.request.headers).toMatchObject({ authorization: '[removed]', 'content-type': 'application/json' });
  });
});

describe('refused requests keep their bodies as the connection records them', () => {
  it('raw: a denied and a rejected request replay with their headers and the bodies that were sent', async () => {
    const before = await requestsSoFar('raw');
    const deniedBody = chat('forbidden', 'write to jane@example.com');
    const rejectedBody = chat('frontier', 'a question that waits for a reviewer and is turned down');
    expect((await call('raw', '/v1/chat/completions', { body: deniedBody })).status).toBe(403);
    expect((await rejected('raw', rejectedBody)).status).toBe(403);
    const session = await sessionOf('raw', before + 2);
    const replay = replayJson(await new SessionApi({ gateway: gw.url, token: tokens.carol }).load(session.id)) as { exchanges: Record<string, any>[] };
    expect(replay.exchanges.slice(before).map((x) => [x.status, x.decision?.action, x.request.recorded, x.request.body, x.bytes_up])).toEqual([
      [403, 'deny', 'raw', { kind: 'json', value: JSON.parse(deniedBody) }, Buffer.byteLength(deniedBody)],
      [403, 'review', 'raw', { kind: 'json', value: JSON.parse(rejectedBody) }, Buffer.byteLength(rejectedBody)],
    ]);
    expect(replay.exchanges[before + 1]!.request.headers).toMatchObject({ authorization: '[removed]', 'content-type': 'application/json' });
    expect(replay.exchanges.slice(before).map((x) => x.bytes_up)).toEqual([Buffer.byteLength(deniedBody), Buffer.byteLength(rejectedBody)]);
  });

  it('raw: an expired review and a caller that left while held keep their bodies too, with what the caller got', async () => {
    const before = await requestsSoFar('raw');
    const expiredBody = chat('brief', 'nobody reviews this in time');
    const expired = await call('raw', '/v1/chat/completions', { body: expiredBody });
    expect([expired.status, JSON.parse(expired.body).error.code]).toEqual([403, 'ERR_REVIEW_EXPIRED']);
    // The caller sends its request, waits for the review to open, and hangs up.
    const leftBody = chat('frontier', 'I will not wait for this');
    const req = httpRequest({
      host: '127.0.0.1',
      port: gw.port,
      method: 'POST',
      path: '/v1/proxy/raw/v1/chat/completions',
      headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' },
    });
    req.on('error', () => undefined);
    req.end(leftBody);
    await vi.waitFor(
      async () => {
        const { body } = await api<{ reviews: { rule: string }[] }>('bob', '/v1/reviews?status=pending');
        expect(body.reviews.some((r) => r.rule === 'frontier-review')).toBe(true);
      },
      { timeout: 10_000, interval: 50 },
    );
    req.destroy();
    const session = await sessionOf('raw', before + 2);
    // The abandoned exchange's end is written once the gateway sees the caller go.
    let replay: { exchanges: Record<string, any>[] } = { exchanges: [] };
    await vi.waitFor(async () => {
      replay = replayJson(await new SessionApi({ gateway: gw.url, token: tokens.carol }).load(session.id)) as { exchanges: Record<string, any>[] };
      expect(replay.exchanges[before + 1]?.error?.code).toBe('ERR_REVIEW_ABANDONED');
    });
    expect(replay.exchanges.slice(before).map((x) => [x.status, x.complete, x.error?.code, x.request.recorded, x.request.body, x.bytes_up])).toEqual([
      [403, true, 'ERR_REVIEW_EXPIRED', 'raw', { kind: 'json', value: JSON.parse(expiredBody) }, Buffer.byteLength(expiredBody)],
      [0, false, 'ERR_REVIEW_ABANDONED', 'raw', { kind: 'json', value: JSON.parse(leftBody) }, Buffer.byteLength(leftBody)],
    ]);
  });

  it('masked: a denied request keeps its body as the masking profiles leave it, never the value', async () => {
    const deniedBody = chat('forbidden', 'write to jane@example.com');
    expect((await call('masked', '/v1/chat/completions', { body: deniedBody })).status).toBe(403);
    const session = await sessionOf('masked', 1);
    const records = await recordsOf(session);
    const request = records.find((e): e is RecordedEvent<'exchange.request'> => e.type === 'exchange.request')!;
    expect(request.fields.body).toEqual({ capture: 'masked', bytes: Buffer.byteLength(deniedBody), sha256: sha256(deniedBody) });
    expect(request.payload?.toString()).toContain('[EMAIL]');
    expect(request.payload?.toString()).not.toContain('jane@example.com');
    const replay = replayJson(await new SessionApi({ gateway: gw.url, token: tokens.carol }).load(session.id)) as { exchanges: Record<string, any>[] };
    expect(replay.exchanges[0]!.request).toMatchObject({ recorded: 'masked', body: { kind: 'json' } });
    expect(JSON.stringify(replay.exchanges[0]!.request.body)).toContain('[EMAIL]');
  });
});

describe('path refusals are recorded on every way in', () => {
  it('a tunnelled request refused for its path leaves its request, error and 400 end in the tunnel session', async () => {
    const client = new TunnelClient({ gateway: gw.url, connection: 'files', getToken: async () => ({ token: tokens.alice }) });
    const hello = await client.start();
    onTestFinished(() => client.close());
    const stream = await client.openStream({});
    const refused = await httpOver(() => stream, { path: '/a/%5c..%5csecret' });
    expect(refused.status).toBe(400);
    const sessionId = hello.session_id;
    await vi.waitFor(
      async () => {
        const { body } = await api<unknown>('carol', `/v1/sessions/${sessionId}`);
        expect(sessionDetailSchema.parse(body).exchanges?.[0]).toMatchObject({ path: '/a/%5c..%5csecret', status: 400, complete: true, error: { code: 'ERR_PATH_REFUSED' } });
      },
      { timeout: 10_000, interval: 50 },
    );
  });
});
