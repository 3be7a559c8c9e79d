/**
 * `sluice replay` end to end: a real gateway (`buildApp`, listening on 127.0.0.1) with the test IdP, the
 * demo model server behind `llm` and a second model server that answers differently behind `other`.
 * alice calls `llm` with the openai SDK through the direct proxy; the spawned CLI then plays her
 * recorded session back and re-sends it as an auditor.
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../server/config/schema.js';
import type { RunningModelServer } from '../../server/demo/model-server.js';
import { newRequestId } from '../../server/pipeline/exchange.js';
import { openStorage } from '../../server/recording/open-storage.js';
import { newSessionId } from '../../server/tunnel/tunnel-route.js';
import { spawnConnect } from '../helpers/cli-connect.js';
import { runCli, spawnCli } from '../helpers/cli-process.js';
import { gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';
import { startTestUpstream, type TestUpstream } from '../helpers/upstream.js';

const PROMPT = 'Name three rivers of Europe';
/** A request body as the recorder will keep it once request masking writes masked bodies. */
const MASKED_PROMPT = 'Write to [EMAIL] about card ****4242';

const gateways = gatewayFixture();
let gw: TestGateway;
let model: RunningModelServer;
let other: TestUpstream;
let gateway: string;
let dir: string;
const tokens: Record<'alice' | 'auditor' | 'carol', string> = { alice: '', auditor: '', carol: '' };
/** alice's streamed SDK call, as she received it. */
const recorded = { session: '', answer: '' };
/** alice's call on `llm-digest`, whose connection keeps only sizes and digests of bodies. */
let digestSession = '';
/** A session whose request body was recorded masked. */
let maskedSession = '';

const record = { request_body: 'raw', response_body: 'raw', raw: false } as const;

/**
 * Writes, with the gateway's own recording code, a session whose request body was kept masked: the
 * pipeline does not mask request bodies yet, so no call through it can produce one today.
 */
async function recordMaskedSession(config: Config): Promise<string> {
  const storage = await openStorage({ config });
  if (storage === undefined) throw new Error('storage is not configured');
  const connection = config.connections.find((c) => c.name === 'llm-masked')!;
  const id = newSessionId();
  const principal = { sub: 'alice', email: 'alice@example.com', groups: ['ml-eng'], roles: [], expiresAt: 0, issuer: gw.idp.issuer };
  const session = await storage.recording.openSession({ id, principal, connection, via: 'proxy', clientAddress: '127.0.0.1' });
  const exchange = newRequestId();
  const body = Buffer.from(JSON.stringify({ model: 'demo-echo', messages: [{ role: 'user', content: MASKED_PROMPT }] }));
  await session.append(
    'exchange.request',
    { exchange, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, decision: { action: 'allow' }, body: { capture: 'raw', bytes: body.length } },
    body,
  );
  const answer = Buffer.from(JSON.stringify({ model: 'demo-echo', choices: [{ index: 0, message: { role: 'assistant', content: 'masked answer' }, finish_reason: 'stop' }] }));
  await session.append('exchange.response', { exchange, status: 200, headers: { 'content-type': 'application/json' } });
  await session.append('exchange.chunk', { exchange, dir: 'down', bytes: answer.length }, answer);
  await session.append('exchange.end', { exchange, status: 200, complete: true, duration_ms: 5, bytes_up: body.length, bytes_down: answer.length });
  await storage.recording.closeSession(id, 'idle');
  await storage.close();
  return id;
}

function env(user: keyof typeof tokens) {
  return { SLUICE_TOKEN: tokens[user], SLUICE_GATEWAY: gateway, XDG_CONFIG_HOME: join(dir, 'no-config') };
}

async function api(path: string, user: keyof typeof tokens = 'auditor'): Promise<Response> {
  return fetch(`${gateway}${path}`, { headers: { authorization: `Bearer ${tokens[user]}` } });
}

/** The event lines of a session, as the sessions API streams them. */
async function eventLines(id: string): Promise<Record<string, unknown>[]> {
  const res = await api(`/v1/sessions/${id}/events`);
  expect(res.status).toBe(200);
  return (await res.text())
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Waits until the gateway recorded the end of a session's first exchange. */
async function exchangeEnded(id: string): Promise<void> {
  await vi.waitFor(
    async () => {
      const res = await api(`/v1/sessions/${id}`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { exchanges: { duration_ms: number | null }[] }).exchanges[0]?.duration_ms).toEqual(expect.any(Number));
    },
    { timeout: 15_000, interval: 100 },
  );
}

/** Waits until the gateway sealed a session. */
async function sealed(id: string): Promise<void> {
  await vi.waitFor(
    async () => {
      const res = await api(`/v1/sessions/${id}`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { session: { status: string } }).session.status).toBe('closed');
    },
    { timeout: 15_000, interval: 100 },
  );
}

/** An openai SDK client of a connection through the direct proxy, as alice. */
function sdk(connection: string): OpenAI {
  return new OpenAI({ baseURL: `${gateway}/v1/proxy/${connection}/v1`, apiKey: tokens.alice, maxRetries: 0 });
}

beforeAll(async () => {
  other = await startTestUpstream();
  dir = await mkdtemp(join(tmpdir(), 'sluice-e2e-replay-'));
  gw = await gateways.start({
    // Paced chunks, so playback has a pace to keep.
    model: { chunks: 8, chunkDelayMs: 60 },
    connections: ({ model, echo }) => [
      modelConnection(model, { record }),
      { name: 'other', type: 'http', upstream: other.url, allow_groups: ['ml-eng'], record },
      modelConnection(model, { name: 'llm-digest', record: { request_body: 'none', response_body: 'none', raw: false } }),
      modelConnection(model, { name: 'llm-masked' }),
      { name: 'echo', type: 'tcp', upstream: echo, allow_groups: ['ml-eng'], record: { request_body: 'masked', response_body: 'masked', raw: true } },
    ],
    config: { roles: { auditor: ['security'] }, storage: { proxy_session_idle: '10m' } },
  });
  ({ model, url: gateway } = gw);
  tokens.alice = await gw.token('alice');
  // An auditor on the ML team: reads every session and may use the ML connections.
  tokens.auditor = await gw.token('carol', { groups: ['security', 'ml-eng'] });
  tokens.carol = await gw.token('carol');
  // Written while the gateway is down: it and the recording code are two writers of one storage dir.
  await gw.stopApp();
  maskedSession = await recordMaskedSession(gw.config);
  await gw.startApp();

  const { data: stream, response } = await sdk('llm')
    .chat.completions.create({ model: 'demo-echo', messages: [{ role: 'user', content: PROMPT }], stream: true })
    .withResponse();
  for await (const chunk of stream) recorded.answer += chunk.choices[0]?.delta.content ?? '';
  recorded.session = response.headers.get('x-sluice-session') ?? '';

  const digest = await sdk('llm-digest').chat.completions.create({ model: 'demo-echo', messages: [{ role: 'user', content: 'kept as a digest' }] }).withResponse();
  digestSession = digest.response.headers.get('x-sluice-session') ?? '';
  await Promise.all([exchangeEnded(recorded.session), exchangeEnded(digestSession)]);
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await other?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Side {
  session: string;
  exchange: number;
  status: number;
  model?: string;
  text: string;
}

describe('sluice replay SESSION --resend', () => {
  it('re-sends alice\'s recorded SDK exchange through another connection as the auditor and diffs the answers', async () => {
    expect(recorded.session).toMatch(/^ses_[0-9a-f]{32}$/);
    expect(recorded.answer).toContain(PROMPT);
    const before = other.requests.length;

    const r = await runCli(['replay', recorded.session, '--exchange', '1', '--resend', '--connection', 'other', '--json'], { env: env('auditor') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { old: Side; new: Side; diff: { op: string; text: string }[] };
    expect(out.old).toMatchObject({ session: recorded.session, exchange: 1, status: 200, model: 'demo-echo', text: recorded.answer });
    // The second model server streams "Hel" + "lo".
    expect(out.new).toMatchObject({ exchange: 1, status: 200, text: 'Hello' });
    expect(out.new.session).toMatch(/^ses_[0-9a-f]{32}$/);
    expect(out.new.session).not.toBe(recorded.session);
    expect(out.diff.filter((p) => p.op === 'insert').map((p) => p.text)).toEqual(['Hello']);
    expect(out.diff.filter((p) => p.op === 'delete').map((p) => p.text).join('')).toContain(PROMPT);
    expect(out.diff.filter((p) => p.op !== 'insert').map((p) => p.text).join('')).toBe(recorded.answer);

    // The recorded request reached the other upstream, as sent by the SDK, without the gateway's header.
    expect(other.requests.length).toBe(before + 1);
    const sent = other.requests.at(-1)!;
    expect(sent.url).toBe('/v1/chat/completions');
    expect(JSON.parse(sent.body.toString('utf8'))).toMatchObject({ model: 'demo-echo', stream: true, messages: [{ role: 'user', content: PROMPT }] });
    expect(sent.headers['x-sluice-resend-of']).toBeUndefined();
    expect(sent.headers.authorization).toBeUndefined();

    // The new session is the auditor's, says which exchange it re-sends, and holds that one exchange:
    // it is sealed at once, not after the proxy's usual idle time (10 minutes here).
    await sealed(out.new.session);
    const start = (await eventLines(out.new.session))[0]!;
    expect(start).toMatchObject({ type: 'session.start', resend_of: `${recorded.session}#1`, connection: { name: 'other' }, user: { sub: 'carol' } });
    // The index knows it too: the re-sends of a session are one query away.
    const listed = await runCli(['sessions', 'list', '--resend-of', recorded.session, '--json'], { env: env('auditor') });
    expect(listed.code).toBe(0);
    const rows = (JSON.parse(listed.stdout) as { sessions: { id: string; resend_of: string | null }[] }).sessions;
    expect(rows.map((r) => [r.id, r.resend_of])).toContainEqual([out.new.session, `${recorded.session}#1`]);
    expect(rows.every((r) => r.resend_of?.startsWith(`${recorded.session}#`))).toBe(true);
    const shown = await runCli(['sessions', 'show', out.new.session], { env: env('auditor') });
    expect(shown.stdout).toContain(`re-sends:    ${recorded.session}#1`);
  });

  it('prints both answers and the word diff as plain lines off a terminal', async () => {
    const r = await runCli(['replay', recorded.session, '--exchange', '1', '--resend', '--connection', 'other'], { env: env('auditor') });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`Re-sending ${recorded.session}#1 through other as you`);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe(`old: ${recorded.session} #1 · status 200 · demo-echo`);
    expect(lines[1]).toMatch(/^new: ses_[0-9a-f]{32} #1 · status 200 · demo-echo$/);
    expect(r.stdout).toContain('{+Hello+}');
    expect(r.stdout).toContain(`[-${recorded.answer}-]`);
  });

  it('goes through the gateway as the current user: an auditor outside the connection\'s groups is refused', async () => {
    const before = model.requests.length;
    const r = await runCli(['replay', recorded.session, '--exchange', '1', '--resend'], { env: env('carol') });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('ERR_CONNECTION_FORBIDDEN');
    expect(r.stdout).toBe('');
    expect(model.requests.length).toBe(before);
  });

  it('refuses a request body recorded masked unless --masked-ok, then sends the placeholders', async () => {
    const before = model.requests.length;
    const refused = await runCli(['replay', maskedSession, '--exchange', '1', '--resend'], { env: env('auditor') });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('was recorded masked: re-sending sends the placeholders, not the original values');
    expect(refused.stderr).toContain('Pass --masked-ok to send it anyway.');
    expect(refused.stderr).toContain('ERR_USAGE');
    expect(model.requests.length).toBe(before);

    const sent = await runCli(['replay', maskedSession, '--exchange', '1', '--resend', '--masked-ok', '--connection', 'llm', '--json'], { env: env('auditor') });
    expect(sent.stderr).toBe('');
    expect(sent.code).toBe(0);
    const out = JSON.parse(sent.stdout) as { old: Side; new: Side };
    expect(out.old.text).toBe('masked answer');
    // The demo model echoes the prompt: what went out is the placeholders.
    expect(out.new.text).toContain(MASKED_PROMPT);
    expect(model.requests.length).toBe(before + 1);
    expect(model.requests.at(-1)!.body).toContain(MASKED_PROMPT);
  });

  it('cannot re-send a request whose body was not recorded', async () => {
    const r = await runCli(['replay', digestSession, '--resend'], { env: env('auditor') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`The request body of ${digestSession} #1 was not recorded`);
    const masked = await runCli(['replay', digestSession, '--resend', '--masked-ok'], { env: env('auditor') });
    expect(masked.code).toBe(2);
    expect(masked.stderr).toContain('was not recorded');
  });

  it('the gateway refuses a malformed x-sluice-resend-of', async () => {
    const res = await fetch(`${gateway}/v1/proxy/llm/v1/models`, { headers: { authorization: `Bearer ${tokens.alice}`, 'x-sluice-resend-of': 'anything' } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_BAD_REQUEST');
  });
});

/** Runs `sluice replay …` and notes when each piece of stdout arrived. */
async function timedReplay(args: string[]): Promise<{ code: number | null; text: string; arrivals: number[] }> {
  const cli = spawnCli(['replay', ...args], { env: env('auditor') });
  const arrivals: number[] = [];
  cli.child.stdout!.on('data', () => arrivals.push(performance.now()));
  const code = await cli.exited;
  return { code, text: cli.stdout(), arrivals };
}

/** Keys spelled camelCase anywhere in a --json answer, recorded headers and bodies (the caller's data) aside. */
function camelCaseKeys(value: unknown, path = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => camelCaseKeys(v, `${path}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => [
    ...(/[A-Z]/.test(k) ? [`${path}.${k}`] : []),
    ...(k === 'headers' || k === 'body' ? [] : camelCaseKeys(v, `${path}.${k}`)),
  ]);
}

describe('sluice replay SESSION off a terminal', () => {
  it('prints the exchange data with --json', async () => {
    const r = await runCli(['replay', recorded.session, '--exchange', '1', '--json'], { env: env('auditor') });
    expect(r.code).toBe(0);
    const x = JSON.parse(r.stdout) as { index: number; method: string; path: string; status: number; streamed: boolean; chunks: { t: number; text: string }[] };
    expect(x).toMatchObject({ index: 1, method: 'POST', path: '/v1/chat/completions', status: 200, streamed: true });
    expect(x.chunks.map((c) => c.text).join('')).toBe(recorded.answer);
    // snake_case, as every other --json and the API: duration_ms, not latencyMs.
    expect(x).toMatchObject({ t: expect.any(Number), duration_ms: expect.any(Number) });
    expect(Object.keys(x)).toEqual(expect.arrayContaining(['ttfb_ms', 'finish_reason', 'request', 'response', 'masking', 'waits']));
    expect(camelCaseKeys(x)).toEqual([]);
    const whole = await runCli(['replay', recorded.session, '--json'], { env: env('auditor') });
    const session = JSON.parse(whole.stdout) as { session: { id: string; started_at: string; connection_type: string }; exchanges: { index: number }[] };
    expect(session.session).toMatchObject({ id: recorded.session, started_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), connection_type: 'http' });
    expect(session.exchanges.map((e) => e.index)).toEqual([1]);
    expect(camelCaseKeys(session)).toEqual([]);
  });

  it('writes the streamed answer at its recorded pace, faster with --speed', async () => {
    const json = await runCli(['replay', recorded.session, '--exchange', '1', '--json'], { env: env('auditor') });
    const chunks = (JSON.parse(json.stdout) as { chunks: { t: number }[] }).chunks;
    // The model server paused 60 ms between its 8 pieces.
    expect(chunks.length).toBeGreaterThanOrEqual(8);
    const recordedSpan = chunks.at(-1)!.t - chunks[0]!.t;
    expect(recordedSpan).toBeGreaterThanOrEqual(7 * 50);

    const normal = await timedReplay([recorded.session, '--exchange', '1']);
    expect(normal.code).toBe(0);
    expect(normal.text).toBe(`${recorded.answer}\n`);
    const fast = await timedReplay([recorded.session, '--exchange', '1', '--speed', '4']);
    expect(fast.code).toBe(0);
    expect(fast.text).toBe(`${recorded.answer}\n`);

    // Pieces arrive over time, not at once; timers never fire early, so these lower bounds hold on a slow machine.
    const span = (a: number[]) => a.at(-1)! - a[0]!;
    expect(normal.arrivals.length).toBeGreaterThanOrEqual(8);
    expect(span(normal.arrivals)).toBeGreaterThanOrEqual(recordedSpan * 0.9);
    expect(span(fast.arrivals)).toBeGreaterThanOrEqual((recordedSpan / 4) * 0.9);
    // At four times the speed the same pieces take about a quarter of the time; "less" leaves room for a busy machine.
    expect(span(fast.arrivals)).toBeLessThan(span(normal.arrivals));
  });

  it('refuses an exchange number the session does not have', async () => {
    const r = await runCli(['replay', recorded.session, '--exchange', '5'], { env: env('auditor') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${recorded.session} has one exchange (#1); --exchange 5 names none`);
  });
});

/** alice types two lines into `sluice connect echo`, a pause between them, then closes the tunnel. */
async function recordTcpSession(): Promise<string> {
  const { cli, ready, localPort: port } = await spawnConnect(['echo'], { env: env('alice') });
  const socket = tcpConnect(port, '127.0.0.1');
  await once(socket, 'connect');
  let echoed = '';
  socket.on('data', (d: Buffer) => (echoed += d.toString('utf8')));
  socket.write('PING\r\n');
  await vi.waitFor(() => expect(echoed).toBe('PING\r\n'));
  await new Promise((r) => setTimeout(r, 300));
  socket.write('QUIT\r\n');
  await vi.waitFor(() => expect(echoed).toBe('PING\r\nQUIT\r\n'));
  socket.end();
  await once(socket, 'close');
  cli.kill('SIGTERM');
  await cli.exited;
  await sealed(ready.session_id);
  return ready.session_id;
}

describe('sluice replay of a tcp session off a terminal', () => {
  it('writes the input/output timeline at its recorded pace, and refuses to re-send it', async () => {
    const id = await recordTcpSession();
    const played = await timedReplay([id]);
    expect(played.code).toBe(0);
    const lines = played.text.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/→\s+6 B  PING↵$/);
    expect(lines[1]).toMatch(/←\s+6 B  PING↵$/);
    expect(lines[2]).toMatch(/→\s+6 B  QUIT↵$/);
    expect(lines[3]).toMatch(/←\s+6 B  QUIT↵$/);
    // alice paused 300 ms before QUIT: the replay keeps the pause (timers never fire early).
    expect(played.arrivals.at(-1)! - played.arrivals[0]!).toBeGreaterThanOrEqual(250);

    const r = await runCli(['replay', id, '--resend'], { env: env('auditor') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${id} #1 is a tcp exchange: only http requests can be re-sent`);
  });
});
