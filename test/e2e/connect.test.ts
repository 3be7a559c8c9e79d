import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RunningModelServer } from '../../server/demo/model-server.js';
import { spawnConnect } from '../helpers/cli-connect.js';
import { runCli } from '../helpers/cli-process.js';
import { gatewayFixture, modelConnection, UPSTREAM_API_KEY, type TestGateway } from '../helpers/gateway.js';
import { tempDir } from '../helpers/temp-dir.js';

const gateways = gatewayFixture();
let gw: TestGateway;
let model: RunningModelServer;
let gateway: string;
let aliceToken: string;

beforeAll(async () => {
  gw = await gateways.start({ model: { chunks: 30, chunkDelayMs: 40 }, connections: ({ model }) => [modelConnection(model)] });
  ({ model, url: gateway } = gw);
  aliceToken = await gw.token('alice');
});

function tokenEnv(token = aliceToken) {
  return { SLUICE_TOKEN: token, SLUICE_GATEWAY: gateway, XDG_CONFIG_HOME: join(tmpdir(), 'sluice-e2e-none') };
}

async function connect(name = 'llm'): Promise<{ baseURL: string; sessionId: string; localToken: string }> {
  const { ready } = await spawnConnect([name], { env: tokenEnv() });
  return { baseURL: ready.openai_base_url!, sessionId: ready.session_id, localToken: ready.local_token! };
}

/** Stream a chat completion and note when the first delta arrived and when the upstream sent its last chunk. */
async function streamOnce(client: OpenAI) {
  const before = model.requests.length;
  let upstreamEndedAt: number | undefined;
  const onEnd = () => (upstreamEndedAt ??= Date.now());
  model.events.on('stream-end', onEnd);
  try {
    const stream = await client.chat.completions.create({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'stream to me' }] });
    let firstAt: number | undefined;
    let upstreamEndedBeforeFirst = false;
    let text = '';
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta?.content ?? '';
      if (delta && firstAt === undefined) {
        firstAt = Date.now();
        upstreamEndedBeforeFirst = upstreamEndedAt !== undefined;
      }
      text += delta;
    }
    return { text, firstAt: firstAt!, upstreamEndedAt: upstreamEndedAt!, upstreamEndedBeforeFirst, request: model.requests[before]! };
  } finally {
    model.events.off('stream-end', onEnd);
  }
}

describe('through `sluice connect`', () => {
  it('serves the openai SDK, streaming and not, with the upstream credential injected and the caller\'s dropped', async () => {
    const { baseURL, localToken } = await connect();
    // the SDK's api key is the local token: the local port requires it and never forwards it
    const client = new OpenAI({ baseURL, apiKey: localToken, maxRetries: 0 });
    const before = model.requests.length;
    const completion = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hello gateway' }] });
    expect(completion.choices[0]?.message.content).toContain('hello gateway');
    const seen = model.requests[before]!;
    expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_API_KEY}`);
    expect(seen.headers['x-request-id']).toMatch(/^req_/);
    expect(seen.headers['x-forwarded-for']).toBeTruthy();

    const streamed = await streamOnce(client);
    expect(streamed.text).toContain('stream to me');
    expect(streamed.upstreamEndedBeforeFirst).toBe(false);
    expect(streamed.firstAt).toBeLessThan(streamed.upstreamEndedAt);
  });

  it('serves curl', async () => {
    const { baseURL, localToken } = await connect();
    const curl = spawn('curl', ['-sS', '-i', '-H', `Authorization: Bearer ${localToken}`, `${baseURL}/models`]);
    let out = '';
    curl.stdout.on('data', (d) => (out += d));
    expect(await new Promise((r) => curl.on('exit', r))).toBe(0);
    expect(out).toMatch(/^HTTP\/1\.1 200/);
    expect(out).toMatch(/x-request-id: req_/i);
    expect(out).toContain('"object":"list"');
  });

  it('reports a refused tunnel with the gateway\'s code and exit code', async () => {
    const dave = await gw.token('dave');
    const r = await runCli(['connect', 'llm'], { env: tokenEnv(dave) });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('ERR_CONNECTION_FORBIDDEN');
    const unknown = await runCli(['connect', 'nope'], { env: tokenEnv() });
    expect(unknown.code).toBe(5);
    expect(unknown.stderr).toContain('ERR_CONNECTION_UNKNOWN');
  });
});

describe('through /v1/proxy', () => {
  it('serves the openai SDK with a bearer token, streaming and not', async () => {
    const client = new OpenAI({ baseURL: `${gateway}/v1/proxy/llm/v1`, apiKey: aliceToken, maxRetries: 0 });
    const completion = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'agent call' }] });
    expect(completion.choices[0]?.message.content).toContain('agent call');
    const streamed = await streamOnce(client);
    expect(streamed.request.headers.authorization).toBe(`Bearer ${UPSTREAM_API_KEY}`);
    expect(streamed.firstAt).toBeLessThan(streamed.upstreamEndedAt);
  });

  it('gives the SDK an error it can show when the token is bad', async () => {
    const client = new OpenAI({ baseURL: `${gateway}/v1/proxy/llm/v1`, apiKey: 'not-a-jwt', maxRetries: 0 });
    const err = await client.models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('ERR_TOKEN_MALFORMED');
  });
});

describe('sluice run', () => {
  it('runs the command with OPENAI_BASE_URL through the tunnel and exits with its exit code', async () => {
    const dir = await tempDir('sluice-run-');
    const script = join(dir, 'script.mjs');
    await writeFile(
      script,
      `const r = await fetch(process.env.OPENAI_BASE_URL + '/models', { headers: { authorization: 'Bearer ' + process.env.OPENAI_API_KEY } });
const body = await r.json();
console.log('models:' + body.data.map((m) => m.id).join(','));
console.log('session:' + process.env.SLUICE_SESSION_ID);
process.exit(Number(process.argv[2]));\n`,
    );
    const r = await runCli(['run', 'llm', '--', process.execPath, script, '42'], { env: tokenEnv() });
    expect(r.stdout).toContain('models:demo-echo');
    expect(r.stdout).toMatch(/session:ses_[0-9a-f]{32}/);
    expect(r.code).toBe(42);
    const ok = await runCli(['run', 'llm', '--', process.execPath, script, '0'], { env: tokenEnv() });
    expect(ok.code).toBe(0);
    const missing = await runCli(['run', 'llm', '--', 'no-such-command-xyz'], { env: tokenEnv() });
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain('command not found');
  });
});
