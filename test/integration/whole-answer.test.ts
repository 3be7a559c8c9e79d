/**
 * A sized answer that masking rewrites (masked by a profile, or searched for the connection's injected
 * credential) leaves the gateway whole: held to its end, then sent with its new Content-Length, as the
 * upstream sent it, rather than chunked in a write for its head, its body and its last chunk each. Bounded:
 * a longer one streams chunked. And held means held: nothing of it reaches the caller before its end is on
 * record.
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
