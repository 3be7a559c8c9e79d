/**
 * A sized answer that masking rewrites (masked by a profile, or searched for the connection's injected
 * credential) leaves the gateway whole: held to its end, then sent with its new Content-Length, as the
 * upstream sent it, rather than chunked in a write for its head, its body and its last chunk each. Bounded:
 * a longer one streams chunked. And held means held: nothing of it reaches the caller before its end is on
 * record. A streamed answer's head, which waits for the end of its turn to go out with the first chunk, still
 * goes out alone when no chunk comes.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import { connectionSchema, type HttpConnectionConfig } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { loadMaskingProfiles } from '../../server/masking/load-profiles.js';
import { createMaskingStage } from '../../server/masking/masking-stage.js';
import type { SessionRecorder } from '../../server/pipeline/recorder.js';
import { createExchangeHandler } from '../../server/pipeline/run-exchange.js';
import { WHOLE_ANSWER_MAX_BYTES } from '../../server/protocols/http-carrier.js';
import { createHttpProtocol } from '../../server/protocols/http.js';
import { until } from '../helpers/gateway.js';
import { recordedEvents, type RecordedEvent } from '../helpers/recorded-events.js';

const configPath = fileURLToPath(new URL('../fixtures/masking/sluice.yaml', import.meta.url));
const profiles = await loadMaskingProfiles(parseConfigText(readFileSync(configPath, 'utf8')), { baseDir: dirname(configPath) });

const alice: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const UPSTREAM_KEY = 'sk-upstream-whole-answer-0123456789';

/** An upstream answering every request with `body`, sized (Content-Length), as a JSON API does. */
async function sizedUpstream(body: string): Promise<string> {
  const server: HttpServer = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The HTTP protocol on a local listener, with the real masking stage and a recorder the test reads. */
async function startGateway(upstream: string, masking: string[], recorder: SessionRecorder): Promise<number> {
  const connection = connectionSchema.parse({
    name: 'llm',
    type: 'http',
    upstream,
    allow_groups: ['ml-eng'],
    headers: { authorization: `Bearer ${UPSTREAM_KEY}` },
    masking,
  }) as HttpConnectionConfig;
  const exchange = createExchangeHandler({ masking: createMaskingStage({ profiles }) });
  const protocol = createHttpProtocol({ exchange });
  const server = createServer((socket) => protocol.handle(socket, { principal: alice, connection, session: { id: 'ses_test', recorder }, clientAddress: '127.0.0.1' }));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(async () => {
    await protocol.close();
    await exchange.close();
    await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as AddressInfo).port;
}

/** Sends one request on a raw socket and returns every byte that came back before the connection closed. */
async function rawExchange(port: number): Promise<Buffer> {
  const socket: Socket = connect(port, '127.0.0.1');
  onTestFinished(() => void socket.destroy());
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  // Connection: close, so the gateway closes once it has answered (or cut the answer off).
  socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
  await once(socket, 'close');
  return Buffer.concat(chunks);
}

/** A raw HTTP/1.1 answer split into its head fields and its body bytes as framed (chunked bodies decoded). */
function parseAnswer(raw: Buffer): { status: number; headers: Record<string, string>; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
  let rest = raw.subarray(end + 4);
  if (headers['transfer-encoding'] !== 'chunked') return { status: Number(lines[0]!.split(' ')[1]), headers, body: rest.toString('utf8') };
  const parts: Buffer[] = [];
  for (;;) {
    const lineEnd = rest.indexOf('\r\n');
    const size = parseInt(rest.subarray(0, lineEnd).toString('latin1'), 16);
    if (size === 0) break;
    parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
    rest = rest.subarray(lineEnd + 2 + size + 2);
  }
  return { status: Number(lines[0]!.split(' ')[1]), headers, body: Buffer.concat(parts).toString('utf8') };
}

const answerWith = (content: string): string =>
  JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] });

describe('a sized answer that masking rewrites', () => {
  it('reaches the caller whole, masked, with the Content-Length of what it now is and no chunked framing', async () => {
    const { recorder, events } = recordedEvents();
    const port = await startGateway(await sizedUpstream(answerWith('Write to jane.doe@example.com today.')), ['pii'], recorder);

    const answer = parseAnswer(await rawExchange(port));

    expect(answer.status).toBe(200);
    expect(answer.headers['transfer-encoding']).toBeUndefined();
    expect(answer.headers['content-length']).toBe(String(Buffer.byteLength(answer.body)));
    expect(JSON.parse(answer.body).choices[0].message.content).toBe('Write to [EMAIL] today.');
    const end = events.find((e): e is Extract<RecordedEvent, { type: 'exchange.end' }> => e.type === 'exchange.end');
    expect(end).toMatchObject({ status: 200, complete: true, responseBytes: Buffer.byteLength(answer.body) });
  });

  it('does so too when only the injected credential is searched for (no masking profile)', async () => {
    const { recorder } = recordedEvents();
    const port = await startGateway(await sizedUpstream(answerWith(`The key is ${UPSTREAM_KEY}.`)), [], recorder);

    const answer = parseAnswer(await rawExchange(port));

    expect(answer.headers['transfer-encoding']).toBeUndefined();
    expect(answer.headers['content-length']).toBe(String(Buffer.byteLength(answer.body)));
    expect(answer.body).not.toContain(UPSTREAM_KEY);
  });

  it(`streams chunked past ${WHOLE_ANSWER_MAX_BYTES} bytes, masked from its first byte to its last`, async () => {
    const { recorder } = recordedEvents();
    const filler = 'lorem ipsum '.repeat(Math.ceil((2 * WHOLE_ANSWER_MAX_BYTES) / 12));
    const port = await startGateway(await sizedUpstream(answerWith(`first@example.com ${filler} last@example.com`)), ['pii'], recorder);

    const answer = parseAnswer(await rawExchange(port));

    expect(answer.headers['transfer-encoding']).toBe('chunked');
    expect(answer.headers['content-length']).toBeUndefined();
    expect(JSON.parse(answer.body).choices[0].message.content).toBe(`[EMAIL] ${filler} [EMAIL]`);
  });

  it('never reaches its caller when its end cannot be recorded: not its head, not a byte of its body', async () => {
    const { recorder, events } = recordedEvents({
      onRecord: (event) => {
        if (event.type === 'exchange.end') throw new Error('disk full');
      },
    });
    const port = await startGateway(await sizedUpstream(answerWith('Write to jane.doe@example.com today.')), ['pii'], recorder);

    const raw = await rawExchange(port);

    expect(raw.length).toBe(0);
    expect(events.map((e) => e.type)).toContain('exchange.response');
    expect(events.find((e) => e.type === 'exchange.error')).toMatchObject({ afterResponseHead: true });
  });
});

/**
 * An upstream that answers with an event stream's head at once and its one event only when `release` is
 * called, as a model does that thinks before its first token.
 */
async function thinkingUpstream(): Promise<{ url: string; release: () => void }> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const server: HttpServer = createHttpServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    void released.then(() => res.end('data: {"choices":[{"delta":{"content":"Mail jane.doe@example.com"}}]}\n\ndata: [DONE]\n\n'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, release };
}

describe("a streamed answer's head", () => {
  for (const masking of [['pii'], []]) {
    it(`reaches the caller before the first event does, however long that takes (${masking.length === 0 ? 'no masking profile' : 'masked'})`, async () => {
      const { recorder } = recordedEvents();
      const upstream = await thinkingUpstream();
      const port = await startGateway(upstream.url, masking, recorder);
      const socket: Socket = connect(port, '127.0.0.1');
      onTestFinished(() => void socket.destroy());
      await once(socket, 'connect');
      let received = Buffer.alloc(0);
      socket.on('data', (c: Buffer) => (received = Buffer.concat([received, c])));
      socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');

      // The upstream holds its first event until the caller has the head: a head that waits for it times out here.
      await until(() => received.includes('\r\n\r\n'), 'the head');
      const head = received.toString('latin1');
      expect(head).toMatch(/^HTTP\/1\.1 200 /);
      expect(head).toMatch(/\r\ncontent-type: text\/event-stream\r\n/i);
      expect(head.endsWith('\r\n\r\n')).toBe(true);

      upstream.release();
      await once(socket, 'close');
      const answer = parseAnswer(received);
      expect(answer.body).toContain('data: [DONE]');
      expect(answer.body.includes('jane.doe@example.com')).toBe(masking.length === 0);
    });
  }
});
