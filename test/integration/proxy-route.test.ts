import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Fastify from 'fastify';
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished } from 'vitest';
import { SluiceError } from '../../shared/errors.js';
import { registerProxyRoutes, upstreamPathOf } from '../../server/api/proxy-route.js';
import { connectionSchema, type ConnectionConfig } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { createExchangeHandler } from '../../server/pipeline/run-exchange.js';
import { listenOnLoopback } from '../helpers/loopback.js';
import { tempDir } from '../helpers/temp-dir.js';
import { startTestUpstream, type TestUpstream } from '../helpers/upstream.js';

const run = promisify(execFile);

const agent: Principal = { sub: 'agent-7', groups: ['ml-eng'], roles: [], clientId: 'agent', expiresAt: 4_000_000_000, issuer: 'https://idp.test' };

async function startUpstream(): Promise<TestUpstream> {
  const upstream = await startTestUpstream();
  onTestFinished(() => upstream.close());
  return upstream;
}

/** A fastify app with only the proxy route; authentication is faked (it is tested on its own elsewhere). */
async function startGateway(upstream: { readonly url: string }, fields: Record<string, unknown> = {}): Promise<string> {
  const connections: ConnectionConfig[] = [
    connectionSchema.parse({ name: 'llm', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], headers: { authorization: 'Bearer upstream-secret' }, ...fields }),
    connectionSchema.parse({ name: 'secret-llm', type: 'http', upstream: upstream.url, allow_groups: ['finance'] }),
    connectionSchema.parse({ name: 'db', type: 'tcp', upstream: 'tcp://127.0.0.1:5432', allow_groups: ['ml-eng'] }),
  ];
  const exchange = createExchangeHandler();
  const app = Fastify({ logger: false });
  registerProxyRoutes(app, {
    connections: () => connections,
    exchange,
    authenticate: async (req) => {
      if (req.headers.authorization !== 'Bearer agent-token') throw new SluiceError('ERR_AUTH_REQUIRED');
      return agent;
    },
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  onTestFinished(async () => {
    await app.close();
    await exchange.close();
  });
  return address;
}

async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const { stdout } = await run('curl', ['-sS', '-w', '\n%{http_code}', ...args], { maxBuffer: 64 * 1024 * 1024 });
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
}

describe('ANY /v1/proxy/:connection/*', () => {
  it('maps the URL to the upstream path and query', () => {
    expect(upstreamPathOf('/v1/proxy/llm/v1/chat/completions?x=1&y=2')).toBe('/v1/chat/completions?x=1&y=2');
    expect(upstreamPathOf('/v1/proxy/llm/')).toBe('/');
    expect(upstreamPathOf('/v1/proxy/llm?x=1')).toBe('/?x=1');
  });

  it('serves the openai SDK, non-streaming and streaming, with the agent token replaced by the connection credential', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(upstream);
    const client = new OpenAI({ baseURL: `${gw}/v1/proxy/llm/v1`, apiKey: 'agent-token', maxRetries: 0 });

    const completion = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] });
    upstream.holdStreams();
    const stream = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    const finishedBeforeRelease = upstream.streamsFinished;
    upstream.release();
    let text = first.value?.choices[0]?.delta.content ?? '';
    for (let r = await it.next(); !r.done; r = await it.next()) text += r.value.choices[0]?.delta.content ?? '';

    expect(completion.choices[0]!.message.content).toBe('Hello');
    expect(finishedBeforeRelease).toBe(0);
    expect(text).toBe('Hello');
    expect(upstream.requests.map((r) => [r.url, r.headers.authorization])).toEqual([
      ['/v1/chat/completions', 'Bearer upstream-secret'],
      ['/v1/chat/completions', 'Bearer upstream-secret'],
    ]);
    expect(upstream.requests[0]!.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('streams a body fastify would refuse (over its limit, not JSON) byte-exact to the upstream', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(upstream);
    const body = Buffer.alloc(3 * 1024 * 1024, 'not json {');
    const dir = await tempDir('sluice-proxy-');
    await writeFile(join(dir, 'body'), body);

    const { stdout } = await run(
      'curl',
      ['-sS', '-H', 'Authorization: Bearer agent-token', '-H', 'Content-Type: application/json', '--data-binary', `@${join(dir, 'body')}`, `${gw}/v1/proxy/llm/echo?q=1`],
      { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 },
    );

    expect(createHash('sha256').update(stdout).digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));
    expect(upstream.requests[0]!.url).toBe('/echo?q=1');
  });

  it('passes the events of one upstream read on together, and a paced event as soon as it arrives', async () => {
    // An upstream that writes 40 SSE events in one socket write, then one more once the caller has the 40.
    let sendLast: () => void = () => undefined;
    const upstreamServer = createServer((socket: Socket) => {
      socket.once('data', () => {
        const chunk = (text: string): string => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
        const burst = Array.from({ length: 40 }, (_, n) => chunk(`data: {"n":${n}}\n\n`)).join('');
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n${burst}`);
        sendLast = () => socket.end(`${chunk('data: {"n":40}\n\n')}0\r\n\r\n`);
      });
    });
    const port = await listenOnLoopback(upstreamServer);
    onTestFinished(() => void upstreamServer.close());
    const gw = new URL(await startGateway({ url: `http://127.0.0.1:${port}` }));

    // A raw client, so the chunks the gateway sends are seen as they are framed.
    const client = connect(Number(gw.port), gw.hostname);
    onTestFinished(() => void client.destroy());
    client.write('GET /v1/proxy/llm/v1/events HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer agent-token\r\nconnection: close\r\n\r\n');
    let raw = '';
    const chunksWhenEvents = new Map<number, number>();
    await new Promise<void>((resolve, reject) => {
      client.on('error', reject);
      client.on('data', (data: Buffer) => {
        raw += data.toString('latin1');
        const bodyAt = raw.indexOf('\r\n\r\n');
        if (bodyAt === -1) return;
        // The body's chunks so far: each a hex size line and that many bytes.
        const bodies: string[] = [];
        for (let at = bodyAt + 4; ; ) {
          const eol = raw.indexOf('\r\n', at);
          if (eol === -1) break;
          const size = parseInt(raw.slice(at, eol), 16);
          if (size === 0 || raw.length < eol + 2 + size + 2) break;
          bodies.push(raw.slice(eol + 2, eol + 2 + size));
          at = eol + 2 + size + 2;
        }
        const events = bodies.join('').split('\n\n').length - 1;
        if (!chunksWhenEvents.has(events)) chunksWhenEvents.set(events, bodies.length);
        if (events === 40) sendLast();
        if (events === 41) resolve();
      });
    });
    expect(raw).toMatch(/^HTTP\/1\.1 200/);
    // The burst reached the caller in as few chunks as the upstream's reads, not one per event.
    expect(chunksWhenEvents.get(40)).toBeLessThanOrEqual(2);
    // The last event was only written once the caller had the first 40: it was not held back for more.
    expect(chunksWhenEvents.get(41)).toBe(chunksWhenEvents.get(40)! + 1);
  });

  it('answers 401 without a token, in the OpenAI error shape', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(upstream);
    const client = new OpenAI({ baseURL: `${gw}/v1/proxy/llm/v1`, apiKey: 'wrong', maxRetries: 0 });

    const err = await client.models.list().catch((e: unknown) => e);

    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('ERR_AUTH_REQUIRED');
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers 404 for an unknown connection and 400 for a TCP connection', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(upstream);

    const unknown = await curl(['-H', 'Authorization: Bearer agent-token', `${gw}/v1/proxy/nope/v1/models`]);
    const tcp = await curl(['-H', 'Authorization: Bearer agent-token', `${gw}/v1/proxy/db/anything`]);

    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body).error).toMatchObject({ type: 'not_found_error', code: 'ERR_CONNECTION_UNKNOWN', connection: 'nope' });
    expect(tcp.status).toBe(400);
    expect(JSON.parse(tcp.body).error).toMatchObject({ type: 'invalid_request_error', code: 'ERR_BAD_REQUEST', connection: 'db' });
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers 403 for a connection outside the caller groups', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(upstream);

    const res = await curl(['-H', 'Authorization: Bearer agent-token', `${gw}/v1/proxy/secret-llm/v1/models`]);

    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).error).toMatchObject({ type: 'permission_error', code: 'ERR_CONNECTION_FORBIDDEN', connection: 'secret-llm' });
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers 413 for a body over max_body', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(upstream, { max_body: 1000 });

    const res = await curl(['-H', 'Authorization: Bearer agent-token', '--data-binary', 'z'.repeat(5000), `${gw}/v1/proxy/llm/v1/embeddings`]);

    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error.code).toBe('ERR_BODY_TOO_LARGE');
    expect(upstream.requests).toHaveLength(0);
  });
});
