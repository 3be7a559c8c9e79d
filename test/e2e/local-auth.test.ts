/**
 * The local port of `sluice connect` / `sluice run` serves only whoever holds its local token: another local
 * user's curl gets a 401 from the CLI and never reaches the gateway. Real CLI (bin/sluice, on the dist/ the
 * e2e project compiles first), real gateway, curl and the openai SDK.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { lstat, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey } from 'node:crypto';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { keyRingFromSettings } from '../../server/recording/key-ring.js';
import { readStoredSession, verifyStoredSession } from '../helpers/stored-sessions.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { spawnConnect, type ConnectedCli } from '../helpers/cli-connect.js';
import { runCli, spawnCli, type SpawnedCli } from '../helpers/cli-process.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { tempDir } from '../helpers/temp-dir.js';

const gateways = gatewayFixture();

let gw: TestGateway;
let home: string;
let aliceToken: string;

beforeAll(async () => {
  gw = await gateways.start();
  home = await mkdtemp(join(tmpdir(), 'sluice-local-auth-'));
  aliceToken = await gw.token('alice');
});

afterAll(async () => {
  await gw?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { SLUICE_TOKEN: aliceToken, SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: home, SLUICE_TOKEN_STORE: 'file', ...extra };
}

/** `sluice connect NAME --json ARGS…` as alice, up and ready. */
function connect(name: string, args: string[] = []): Promise<ConnectedCli> {
  return spawnConnect([name, ...args], { env: cliEnv() });
}

/** Run curl; resolves with its exit code and everything it printed (`-i`: the status line and headers too). */
function curl(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('curl', ['-sS', '-i', ...args]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

function jsonBody(out: string): { error?: { type?: string; code?: string; message?: string } } {
  return JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)) as { error?: { type?: string; code?: string; message?: string } };
}

/** Stop the CLI, wait for the gateway to seal the session, and return its decrypted records. */
async function sealedSession(cli: SpawnedCli, sessionId: string): Promise<RecordedEvent[]> {
  cli.kill('SIGTERM');
  await cli.exited;
  const dir = gw.config.storage.dir;
  let events: RecordedEvent[] = [];
  await vi.waitFor(
    async () => {
      const index = new SqliteStore({ file: join(dir, 'index.sqlite') });
      const session = await index.getSession(sessionId);
      await index.close();
      const keyRing = keyRingFromSettings(gw.config.storage)!;
      events = [];
      events.push(...(await readStoredSession(dir, session!.file, keyRing)));
      expect(events.map((e) => e.type)).toContain('session.checkpoint');
      const verdict = await verifyStoredSession(dir, session!.file, keyRing, { publicKey: createPublicKey(await readFile(join(dir, 'signing-key.pem'))) });
      expect(verdict.ok).toBe(true);
    },
    { timeout: 10_000, interval: 100 },
  );
  return events;
}

/** A raw TCP connection to a local port, closed with the test; `text` is all it has received so far. */
async function rawLocalSocket(port: number): Promise<{ socket: Socket; text: () => string }> {
  const socket = netConnect({ host: '127.0.0.1', port });
  onTestFinished(() => void socket.destroy());
  await once(socket, 'connect');
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  return { socket, text: () => received };
}

describe('the local token of sluice connect', () => {
  it('answers a request without it with a local 401 that never reaches the gateway, and serves the ones that carry it', async () => {
    const { cli, ready } = await connect('llm');
    expect(ready.local_token).toMatch(/^sl_local_[A-Za-z0-9_-]{43}$/);
    expect(ready.warning).toBeUndefined();
    const token = ready.local_token!;
    const before = gw.model.requests.length;

    const anonymous = await curl([`${ready.local_url}/v1/models`]);
    const wrong = await curl(['-H', 'Authorization: Bearer sl_local_guessed', `${ready.local_url}/v1/models`]);
    expect(gw.model.requests.length).toBe(before);

    const bearer = await curl(['-H', `Authorization: Bearer ${token}`, `${ready.local_url}/v1/models`]);
    const apiKey = await curl([
      '-H', `x-api-key: ${token}`, '-H', 'content-type: application/json',
      '-d', JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'through x-api-key' }] }),
      `${ready.local_url}/v1/chat/completions`,
    ]);

    for (const refused of [anonymous, wrong]) {
      expect(refused.code).toBe(0);
      expect(refused.out).toMatch(/^HTTP\/1\.1 401 /);
      expect(refused.out).toMatch(/www-authenticate: Bearer/i);
      expect(jsonBody(refused.out).error).toMatchObject({ type: 'authentication_error', code: 'ERR_LOCAL_AUTH' });
    }
    expect(bearer.out).toMatch(/^HTTP\/1\.1 200 /);
    expect(bearer.out).toContain('"object":"list"');
    expect(apiKey.out).toMatch(/^HTTP\/1\.1 200 /);
    expect(apiKey.out).toContain('through x-api-key');
    expect(gw.model.requests.length).toBe(before + 2);
    // the upstream gets the gateway's credential, never the local token, in any header
    for (const r of gw.model.requests.slice(before)) expect(JSON.stringify(r.headers)).not.toContain(token);

    const events = await sealedSession(cli, ready.session_id);
    // only the two requests with the token were recorded, and the token is in no record
    expect(events.filter((e) => e.type === 'exchange.request')).toHaveLength(2);
    expect((events.find((e) => e.type === 'session.end')!.fields as { exchanges: number }).exchanges).toBe(2);
    expect(JSON.stringify(events)).not.toContain(token);
  });

  it('serves the openai SDK that has the local token as its api key, and gives one without it an AuthenticationError', async () => {
    const { ready } = await connect('llm');
    const client = new OpenAI({ baseURL: ready.openai_base_url!, apiKey: ready.local_token!, maxRetries: 0 });
    const completion = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hello local token' }] });
    expect(completion.choices[0]?.message.content).toContain('hello local token');
    const stream = await client.chat.completions.create({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'streamed' }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toContain('streamed');

    const before = gw.model.requests.length;
    const stranger = new OpenAI({ baseURL: ready.openai_base_url!, apiKey: 'sk-someone-else', maxRetries: 0 });
    const err = await stranger.models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('ERR_LOCAL_AUTH');
    expect(gw.model.requests.length).toBe(before);
  });

  it('checks every request of a kept-alive connection, pipelined or not, answering in order', async () => {
    const { ready, localPort: port } = await connect('llm');
    const before = gw.model.requests.length;
    const { socket, text } = await rawLocalSocket(port);
    const body = JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'first of two' }] });
    // both requests in one write: the second lacks the token and must not follow the first to the gateway
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nAuthorization: Bearer ${ready.local_token}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}` +
        'GET /v1/models HTTP/1.1\r\nHost: llm\r\n\r\n',
    );
    await once(socket, 'close');
    const received = text();

    const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([200, 401]);
    expect(received.indexOf('first of two')).toBeLessThan(received.indexOf('ERR_LOCAL_AUTH'));
    expect(gw.model.requests.length).toBe(before + 1);
  });

  it('refuses a request head it cannot read one way only with a local 400, before the gateway', async () => {
    const { ready, localPort: port } = await connect('llm');
    const before = gw.model.requests.length;
    const { socket, text } = await rawLocalSocket(port);
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nAuthorization: Bearer ${ready.local_token}\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`);
    await once(socket, 'close');
    const received = text();
    expect(received).toMatch(/^HTTP\/1\.1 400 /);
    // answered by the CLI, which names the ambiguity, not by the gateway's parser
    expect(received).toContain('"code":"ERR_BAD_REQUEST"');
    expect(received).toContain('a request may not carry both Transfer-Encoding and Content-Length');
    expect(gw.model.requests.length).toBe(before);
  });

  it('--no-local-auth serves without the token, and warns', async () => {
    const { cli, ready } = await connect('llm', ['--no-local-auth']);
    expect(ready.local_token).toBeNull();
    expect(ready.warning).toMatch(/--no-local-auth/);
    await cli.waitForOutput(/sluice: warning: --no-local-auth/);
    const r = await curl([`${ready.local_url}/v1/models`]);
    expect(r.out).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('warns loudly about a --bind that is not loopback, in text and in --json', async () => {
    const { cli, ready } = await connect('llm', ['--bind', '0.0.0.0']);
    expect(ready.warning).toMatch(/--bind 0\.0\.0\.0 is not a loopback address/);
    await cli.waitForOutput(/sluice: warning: --bind 0\.0\.0\.0 is not a loopback address/);

    const text = spawnCli(['connect', 'llm', '--bind', '0.0.0.0'], { env: cliEnv() });
    onTestFinished(() => text.kill('SIGKILL'));
    await text.waitForOutput(/Ctrl-C closes the tunnel/);
    expect(text.stderr()).toMatch(/^sluice: warning: --bind 0\.0\.0\.0 is not a loopback address: the local port can be reached from other machines/m);
    expect(text.stdout()).toMatch(/local token\s+sl_local_/);
  });

  it('keeps tcp connections working: no headers, so no token', async () => {
    const { ready, localPort: port } = await connect('echo');
    expect(ready.local_token).toBeNull();
    const socket = netConnect({ host: '127.0.0.1', port });
    onTestFinished(() => void socket.destroy());
    await once(socket, 'connect');
    let echoed = '';
    socket.on('data', (d: Buffer) => (echoed += d.toString('utf8')));
    socket.write('PING\r\n');
    await vi.waitFor(() => expect(echoed).toBe('PING\r\n'));
  });
});

describe('sluice connect --socket', () => {
  it('listens on a Unix socket only its owner can open, with the token still required, and removes it at the end', async () => {
    const dir = await tempDir('sluice-sock-');
    const path = join(dir, 'llm.sock');
    const { cli, ready } = await connect('llm', ['--socket', path]);
    expect(ready).toMatchObject({ local_socket: path, local_url: null, openai_base_url: null });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await lstat(path)).isSocket()).toBe(true);

    const anonymous = await curl(['--unix-socket', path, 'http://localhost/v1/models']);
    const withToken = await curl(['--unix-socket', path, '-H', `Authorization: Bearer ${ready.local_token}`, 'http://localhost/v1/models']);
    expect(anonymous.out).toMatch(/^HTTP\/1\.1 401 /);
    expect(withToken.out).toMatch(/^HTTP\/1\.1 200 /);
    expect(withToken.out).toContain('"object":"list"');

    cli.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    await expect(lstat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('replaces a stale socket, and refuses a path that is another file or a live socket', async () => {
    const dir = await tempDir('sluice-sock-');

    const file = join(dir, 'notes.txt');
    await writeFile(file, 'keep me');
    const onFile = await runCli(['connect', 'llm', '--socket', file], { env: cliEnv() });
    expect(onFile.code).toBe(2);
    expect(onFile.stderr).toContain('exists and is not a socket');
    expect(await readFile(file, 'utf8')).toBe('keep me');

    const live = createServer();
    const livePath = join(dir, 'live.sock');
    live.listen(livePath);
    await once(live, 'listening');
    onTestFinished(() => new Promise<void>((r) => live.close(() => r())));
    const onLive = await runCli(['connect', 'llm', '--socket', livePath], { env: cliEnv() });
    expect(onLive.code).toBe(2);
    expect(onLive.stderr).toContain('in use by another process');

    // a socket file nobody listens on any more, as a killed `connect` leaves it
    const stalePath = join(dir, 'stale.sock');
    await new Promise<void>((resolve, reject) =>
      execFile(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stalePath)}, () => process.kill(process.pid, 'SIGKILL'))`], () => resolve()).on('error', reject),
    );
    expect((await lstat(stalePath)).isSocket()).toBe(true);
    const { ready } = await connect('llm', ['--socket', stalePath]);
    const r = await curl(['--unix-socket', stalePath, '-H', `x-api-key: ${ready.local_token}`, 'http://localhost/v1/models']);
    expect(r.out).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('sluice run', () => {
  it('hands the child the local token as OPENAI_API_KEY and SLUICE_LOCAL_TOKEN, and none of sluice\'s credentials', async () => {
    const dir = await tempDir('sluice-run-');
    const script = join(dir, 'child.mjs');
    await writeFile(
      script,
      `const e = process.env;
const withKey = await fetch(e.OPENAI_BASE_URL + '/models', { headers: { authorization: 'Bearer ' + e.OPENAI_API_KEY } });
const without = await fetch(e.OPENAI_BASE_URL + '/models');
console.log(JSON.stringify({
  key: e.OPENAI_API_KEY, local: e.SLUICE_LOCAL_TOKEN, token: e.SLUICE_TOKEN ?? null, secret: e.SLUICE_CLIENT_SECRET ?? null,
  master: e.SLUICE_MASTER_KEY ?? null, masterOld: e.SLUICE_MASTER_KEY_OLD ?? null, clientId: e.SLUICE_CLIENT_ID ?? null,
  withKey: withKey.status, without: without.status, code: (await without.json()).error?.code,
}));\n`,
    );
    const r = await runCli(['run', 'llm', '--', process.execPath, script], {
      env: cliEnv({ SLUICE_CLIENT_SECRET: 'ci-secret', SLUICE_CLIENT_ID: 'ci-bot', SLUICE_MASTER_KEY: 'bWFzdGVy', SLUICE_MASTER_KEY_OLD: 'b2xk', OPENAI_API_KEY: 'sk-real-user-key' }),
    });
    expect(r.code, r.stderr).toBe(0);
    const seen = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(seen.key).toMatch(/^sl_local_/);
    expect(seen.local).toBe(seen.key);
    expect(seen).toMatchObject({ token: null, secret: null, master: null, masterOld: null, clientId: 'ci-bot', withKey: 200, without: 401, code: 'ERR_LOCAL_AUTH' });
  });
});
