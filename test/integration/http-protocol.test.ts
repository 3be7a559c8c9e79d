import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { Transform } from 'node:stream';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectionSchema, type HttpConnectionConfig } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import type { MaskingStage } from '../../server/pipeline/masking-stage.js';
import { discardSessionRecorder, type SessionRecorder } from '../../server/pipeline/recorder.js';
import { createExchangeHandler, type ExchangeHandlerOptions } from '../../server/pipeline/run-exchange.js';
import { createHttpProtocol, type HttpProtocolLimits } from '../../server/protocols/http.js';
import { recordedEvents } from '../helpers/recorded-events.js';
import { startTestUpstream, type TestUpstream } from '../helpers/upstream.js';

const run = promisify(execFile);

const alice: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };

function httpConnection(fields: Record<string, unknown>): HttpConnectionConfig {
  return connectionSchema.parse({
    name: 'llm',
    type: 'http',
    allow_groups: ['ml-eng'],
    headers: { authorization: 'Bearer upstream-secret' },
    ...fields,
  }) as HttpConnectionConfig;
}

async function startUpstream(): Promise<TestUpstream> {
  const upstream = await startTestUpstream();
  onTestFinished(() => upstream.close());
  return upstream;
}

/** The tunnel's stand-in: a local listener that hands every accepted socket to the HTTP protocol. */
async function startGateway(
  connection: HttpConnectionConfig,
  principal: Principal = alice,
  limits?: HttpProtocolLimits,
  stages: ExchangeHandlerOptions & { readonly recorder?: SessionRecorder } = {},
): Promise<{ url: string; port: number; server: Server }> {
  const { recorder = discardSessionRecorder, ...handlerOptions } = stages;
  const exchange = createExchangeHandler(handlerOptions);
  const protocol = createHttpProtocol({ exchange, limits });
  const server = createServer((socket) =>
    protocol.handle(socket, { principal, connection, session: { id: 'ses_test', recorder }, clientAddress: socket.remoteAddress ?? '' }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(async () => {
    await protocol.close();
    await exchange.close();
    await new Promise((r) => server.close(r));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port, server };
}

interface RawResponse {
  status: number;
  head: string;
  headers: Record<string, string>;
  body: Buffer;
}

/** Reads `count` HTTP/1.1 responses (Content-Length or chunked) from a raw socket, skipping 100 Continue. */
async function readResponses(socket: Socket, count: number): Promise<RawResponse[]> {
  const out: RawResponse[] = [];
  let buf = Buffer.alloc(0);
  const parse = (): boolean => {
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return false;
      const head = buf.subarray(0, end).toString('latin1');
      const lines = head.split('\r\n');
      const status = Number(lines[0]!.split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      let rest = buf.subarray(end + 4);
      if (status === 100) {
        buf = rest;
        continue;
      }
      let body: Buffer;
      if (headers['transfer-encoding'] === 'chunked') {
        const parts: Buffer[] = [];
        for (;;) {
          const lineEnd = rest.indexOf('\r\n');
          if (lineEnd < 0) return false;
          const size = parseInt(rest.subarray(0, lineEnd).toString(), 16);
          if (rest.length < lineEnd + 2 + size + 2) return false;
          parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
          rest = rest.subarray(lineEnd + 2 + size + 2);
          if (size === 0) break;
        }
        body = Buffer.concat(parts);
      } else {
        const length = Number(headers['content-length'] ?? 0);
        if (rest.length < length) return false;
        body = rest.subarray(0, length);
        rest = rest.subarray(length);
      }
      out.push({ status, head, headers, body });
      buf = rest;
      if (out.length === count) return true;
    }
  };
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (parse()) {
        socket.off('data', onData);
        resolve(out);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`socket closed after ${out.length} responses`)));
  });
}

async function rawSocket(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  onTestFinished(() => void socket.destroy());
  return socket;
}

describe('http protocol (Node parser fed the stream)', () => {
  it('serves the openai SDK, non-streaming, with the connection credential injected', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'caller-key', maxRetries: 0 });

    const { data, response } = await client.chat.completions
      .create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();

    expect(data.choices[0]!.message.content).toBe('Hello');
    expect(response.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
    expect(response.headers.get('x-upstream-request-id')).toBe('upstream-123');
    expect(response.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    const seen = upstream.requests[0]!;
    expect(seen.url).toBe('/v1/chat/completions');
    expect(seen.headers.authorization).toBe('Bearer upstream-secret');
    expect(seen.headers['x-request-id']).toBe(response.headers.get('x-request-id'));
    expect(JSON.parse(seen.body.toString()).messages[0].content).toBe('hi');
  });

  it('streams SSE: the SDK holds the first chunk before the upstream sends the last', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'caller-key', maxRetries: 0 });
    upstream.holdStreams();

    const stream = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value?.choices[0]?.delta.content).toBe('Hel');
    expect(upstream.streamsFinished).toBe(0);

    upstream.release();
    let rest = '';
    for (let r = await it.next(); !r.done; r = await it.next()) rest += r.value.choices[0]?.delta.content ?? '';
    expect(rest).toBe('lo');
    expect(upstream.streamsFinished).toBe(1);
  });

  it('applies the header rules for curl: caller credentials and cookies dropped, forwarding headers set', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: `${upstream.url}/base/`, headers: { authorization: 'Bearer upstream-secret', 'x-org': 'acme' } }));

    const { stdout } = await run('curl', [
      '-sS', '-i',
      '-H', 'Authorization: Bearer caller-token',
      '-H', 'Cookie: session=secret',
      '-H', 'X-Forwarded-For: 6.6.6.6',
      '-H', 'X-Request-Id: spoofed',
      '-H', 'Proxy-Authorization: Basic eA==',
      '-H', 'Connection: keep-alive, X-Hop',
      '-H', 'X-Hop: drop-me',
      '-H', 'X-Kept: yes',
      `${gw.url}/v1/models?limit=2`,
    ]);
    const [head, body] = stdout.split('\r\n\r\n') as [string, string];
    const described = JSON.parse(body) as { url: string; headers: Record<string, string> };
    expect(described.url).toBe('/base/v1/models?limit=2');
    expect(described.headers).toMatchObject({
      authorization: 'Bearer upstream-secret',
      'x-org': 'acme',
      'x-kept': 'yes',
      host: `127.0.0.1:${upstream.port}`,
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': `127.0.0.1:${gw.port}`,
    });
    expect(described.headers['x-request-id']).toMatch(/^req_/);
    expect(head).toContain(`x-request-id: ${described.headers['x-request-id']}`);
    for (const dropped of ['cookie', 'proxy-authorization', 'x-hop']) expect(described.headers).not.toHaveProperty(dropped);
  });

  it('keeps the connection alive across requests', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));
    let accepted = 0;
    gw.server.on('connection', () => accepted++);
    const socket = await rawSocket(gw.port);

    socket.write('GET /one HTTP/1.1\r\nHost: x\r\n\r\n');
    const [one] = await readResponses(socket, 1);
    socket.write('GET /two HTTP/1.1\r\nHost: x\r\n\r\n');
    const [two] = await readResponses(socket, 1);

    expect(JSON.parse(one!.body.toString()).url).toBe('/one');
    expect(JSON.parse(two!.body.toString()).url).toBe('/two');
    expect(accepted).toBe(1);
  });

  it('answers pipelined requests in order', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));
    const socket = await rawSocket(gw.port);

    socket.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n');
    const responses = await readResponses(socket, 2);

    expect(responses.map((r) => JSON.parse(r.body.toString()).url)).toEqual(['/first', '/second']);
  });

  it('streams a chunked request body to the upstream', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));
    const socket = await rawSocket(gw.port);

    socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n');
    socket.write('5\r\nhello\r\n');
    socket.write('1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n');
    const [res] = await readResponses(socket, 1);

    expect(res!.status).toBe(200);
    expect(res!.body.toString()).toBe('hello world!');
    expect(upstream.requests[0]!.headers['transfer-encoding']).toBe('chunked');
  });

  it('answers Expect: 100-continue and then takes the body', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));
    const socket = await rawSocket(gw.port);

    socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    const [interim] = (await once(socket, 'data')) as [Buffer];
    expect(interim.toString()).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    socket.write('12345');
    const [res] = await readResponses(socket, 1);

    expect(res!.body.toString()).toBe('12345');
    expect(upstream.requests[0]!.headers).not.toHaveProperty('expect');
  });

  it('refuses a body over the limit before sending 100 Continue', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url, max_body: 1024 }));
    const socket = await rawSocket(gw.port);

    socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n');
    const [res] = await readResponses(socket, 1);

    expect(res!.status).toBe(413);
    expect(JSON.parse(res!.body.toString()).error).toMatchObject({ code: 'ERR_BODY_TOO_LARGE', type: 'request_too_large' });
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers 413 to curl for a Content-Length over max_body, without calling the upstream', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url, max_body: 1024 }));

    const { stdout } = await run('curl', ['-sS', '-w', '\n%{http_code}', '-H', 'Content-Type: application/json', '--data-binary', 'x'.repeat(2000), `${gw.url}/echo`]);
    const [body, status] = stdout.split('\n') as [string, string];

    expect(status).toBe('413');
    expect(JSON.parse(body).error).toMatchObject({ code: 'ERR_BODY_TOO_LARGE', connection: 'llm' });
    expect(JSON.parse(body).error.message).toContain('connection "llm"');
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers 413 when a chunked body grows over max_body', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url, max_body: 1024 }));
    const socket = await rawSocket(gw.port);

    socket.write('POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    const chunk = `258\r\n${'y'.repeat(600)}\r\n`;
    socket.write(chunk + chunk + chunk);
    const [res] = await readResponses(socket, 1);

    expect(res!.status).toBe(413);
    expect(res!.headers.connection).toBe('close');
    expect(JSON.parse(res!.body.toString()).error.code).toBe('ERR_BODY_TOO_LARGE');
  });

  it('answers 502 naming the connection when the upstream is down', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const gw = await startGateway(httpConnection({ upstream: `http://127.0.0.1:${port}` }));
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'caller-key', maxRetries: 0 });

    const err = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(OpenAI.APIError);
    const apiError = err as InstanceType<typeof OpenAI.APIError>;
    expect(apiError.status).toBe(502);
    expect(apiError.code).toBe('ERR_UPSTREAM_UNAVAILABLE');
    expect(apiError.message).toContain('connection "llm"');
    expect(apiError.requestID).toMatch(/^req_/);
  });

  it('answers 504 when the upstream does not answer within response_timeout', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url, response_timeout: '300ms' }));

    const { stdout } = await run('curl', ['-sS', '-w', '\n%{http_code}', `${gw.url}/hang`]);
    const [body, status] = stdout.split('\n') as [string, string];

    expect(status).toBe('504');
    expect(JSON.parse(body).error).toMatchObject({ code: 'ERR_UPSTREAM_TIMEOUT', type: 'server_error' });
    expect(JSON.parse(body).error.message).toContain('connection "llm"');
  });

  it('aborts the response when the upstream resets mid-stream, never ending it cleanly', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));

    const result = await run('curl', ['-sS', '-N', `${gw.url}/reset`]).then(
      () => ({ code: 0, stdout: '' }),
      (e: { code: number; stdout: string }) => e,
    );

    expect(result.stdout).toContain('"partial":true');
    expect(result.code).not.toBe(0);
  });

  it('pauses the upstream while the caller does not read', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));
    const socket = await rawSocket(gw.port);
    const size = 64 * 1024 * 1024;

    socket.write(`GET /bytes/${size} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await once(socket, 'data');
    socket.pause();
    await new Promise((r) => setTimeout(r, 500));
    expect(upstream.bytesResponsesFinished).toBe(0);

    let received = 0;
    socket.on('data', (c: Buffer) => (received += c.length));
    socket.resume();
    while (received < size - 1024 * 1024) await once(socket, 'data');
    await new Promise((r) => setTimeout(r, 100));
    expect(upstream.bytesResponsesFinished).toBe(1);
  });

  it('refuses a caller outside the allowed groups with 403 and calls no upstream', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }), { ...alice, groups: ['sales'] });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'caller-key', maxRetries: 0 });

    const err = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('ERR_CONNECTION_FORBIDDEN');
    expect((err as Error).message).toContain('connection "llm"');
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers 408 and closes a stream whose request head does not arrive within headersTimeout', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }), alice, { headersTimeoutMs: 200, timeoutCheckIntervalMs: 50 });
    const socket = await rawSocket(gw.port);
    const received: Buffer[] = [];
    socket.on('data', (c: Buffer) => received.push(c));

    socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n');
    await once(socket, 'close');

    expect(Buffer.concat(received).toString()).toMatch(/^HTTP\/1\.1 408 /);
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers 400 to a malformed request head', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));
    const socket = await rawSocket(gw.port);

    socket.write('NOT HTTP AT ALL\r\n\r\n');
    const [res] = await readResponses(socket, 1);

    expect(res!.status).toBe(400);
    expect(JSON.parse(res!.body.toString()).error.code).toBe('ERR_BAD_REQUEST');
  });

  it('answers HEAD with the upstream head and no body, and keeps the connection usable', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway(httpConnection({ upstream: upstream.url }));
    const socket = await rawSocket(gw.port);

    socket.write('HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
    const head = ((await once(socket, 'data')) as [Buffer])[0].toString();
    socket.write('GET /after HTTP/1.1\r\nHost: x\r\n\r\n');
    const [after] = await readResponses(socket, 1);

    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(head.endsWith('\r\n\r\n')).toBe(true);
    expect(upstream.requests[0]!.method).toBe('HEAD');
    expect(JSON.parse(after!.body.toString()).url).toBe('/after');
  });

  it('forwards nothing when the recorder refuses the request (fail closed)', async () => {
    const upstream = await startUpstream();
    const { recorder } = recordedEvents({
      onRecord: (e) => {
        if (e.type === 'exchange.request') throw new Error('disk full');
      },
    });
    const gw = await startGateway(httpConnection({ upstream: upstream.url }), alice, undefined, { recorder });

    const { stdout } = await run('curl', ['-sS', '-w', '\n%{http_code}', `${gw.url}/v1/models`]);
    const [body, status] = stdout.split('\n') as [string, string];

    expect(status).toBe('500');
    expect(JSON.parse(body).error.code).toBe('ERR_INTERNAL');
    expect(upstream.requests).toHaveLength(0);
  });

  it('completes no response, sized or streamed, before its end is recorded', async () => {
    const upstream = await startUpstream();
    let hold: { promise: Promise<void>; release: () => void } | undefined;
    const { recorder, events } = recordedEvents({
      onRecord: async (e) => {
        if (e.type === 'exchange.end') await hold?.promise;
      },
    });
    const types = (): string[] => events.map((e) => e.type);
    const gw = await startGateway(httpConnection({ upstream: upstream.url }), alice, undefined, { recorder });
    const socket = await rawSocket(gw.port);
    const chat = JSON.stringify({ model: 'demo', messages: [], stream: true });
    const requests = [
      'GET /bytes/100 HTTP/1.1\r\nHost: x\r\n\r\n',
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${chat.length}\r\n\r\n${chat}`,
    ];

    const bodies: string[] = [];
    for (const request of requests) {
      let release!: () => void;
      hold = { promise: new Promise<void>((r) => (release = r)), release };
      events.length = 0;
      let complete = false;
      const response = readResponses(socket, 1).then((r) => ((complete = true), r));
      socket.write(request);
      while (!types().includes('exchange.end')) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 50));

      expect(complete).toBe(false);
      hold.release();
      bodies.push((await response)[0]!.body.toString());
      expect(types()).toEqual(['exchange.request', 'exchange.response', 'exchange.end']);
    }

    expect(bodies[0]).toBe('a'.repeat(100));
    expect(bodies[1]).toContain('data: [DONE]');
  });

  it('passes the response body through the masking stage transform', async () => {
    const upstream = await startUpstream();
    const masking: MaskingStage = {
      responseMasking: () => ({
        headers: (headers) => headers,
        body: () => ({
          transform: new Transform({
            transform(chunk: Buffer, _enc, cb) {
              cb(null, chunk.toString().replaceAll('Hel', '[MASKED]'));
            },
          }),
          rewrite: 'masked',
        }),
        summary: () => [],
      }),
    };
    const gw = await startGateway(httpConnection({ upstream: upstream.url }), alice, undefined, { masking });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'caller-key', maxRetries: 0 });

    const stream = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';

    expect(text).toBe('[MASKED]lo');
  });
});
