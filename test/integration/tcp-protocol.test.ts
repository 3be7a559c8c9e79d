import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectionSchema, type TcpConnectionConfig } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import type { SessionRecorder } from '../../server/pipeline/recorder.js';
import { createExchangeHandler, type ExchangeHandlerOptions } from '../../server/pipeline/run-exchange.js';
import { createTcpProtocol, type TcpProtocol } from '../../server/protocols/tcp.js';
import { echoNumberedBlocks } from '../helpers/numbered-blocks.js';
import { recordedEvents, type RecordedEvent, type RecordedEventsOptions } from '../helpers/recorded-events.js';

const alice: Principal = { sub: 'alice', groups: ['ops'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };

function tcpConnection(upstream: string): TcpConnectionConfig {
  return connectionSchema.parse({ name: 'db', type: 'tcp', upstream, allow_groups: ['ops'], connect_timeout: '2s' }) as TcpConnectionConfig;
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

/** The TCP protocol on the pipeline, as the gateway wires it. */
function tcpProtocol(stages: ExchangeHandlerOptions = {}): TcpProtocol {
  const exchange = createExchangeHandler(stages);
  const protocol = createTcpProtocol({ exchange });
  onTestFinished(async () => {
    await protocol.close();
    await exchange.close();
  });
  return protocol;
}

/** The tunnel's stand-in: each accepted local socket is a stream handed to the TCP protocol. */
async function startGateway(upstreamPort: number, principal: Principal = alice, options: { tap?: boolean } = {}): Promise<{ port: number; events: RecordedEvent[] }> {
  // With `tap`, a recorder that takes every chunk at once, so bytes pass through the recording gate.
  const recording: RecordedEventsOptions = options.tap === true ? { tap: () => ({ upRecorded: async () => undefined, down: () => undefined }) } : {};
  const { recorder, events } = recordedEvents(recording);
  return { port: await listen(streamServer(tcpProtocol(), tcpConnection(`tcp://127.0.0.1:${upstreamPort}`), recorder, principal)), events };
}

/** A local listener handing each socket to `protocol` as a tunnel stream of `connection`. */
function streamServer(protocol: TcpProtocol, connection: TcpConnectionConfig, recorder: SessionRecorder, principal: Principal = alice): Server {
  return createServer({ allowHalfOpen: true }, (socket) => protocol.handle(socket, { principal, connection, session: { id: 'ses_test', recorder }, clientAddress: '127.0.0.1' }));
}

async function dial(port: number): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await once(socket, 'connect');
  onTestFinished(() => void socket.destroy());
  return socket;
}

/** Dials and waits for the gateway to drop the stream; true when it was a reset rather than a clean end. */
async function dialUntilClosed(port: number): Promise<{ reset: boolean; bytesRead: number }> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let reset = false;
  socket.on('error', (err: NodeJS.ErrnoException) => (reset = err.code === 'ECONNRESET'));
  socket.resume();
  await new Promise((resolve) => socket.on('close', resolve));
  return { reset, bytesRead: socket.bytesRead };
}

function collect(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return once(socket, 'end').then(() => Buffer.concat(chunks));
}

describe('tcp protocol', () => {
  it("sends the caller's bytes upstream only once the recording holds them, and none it could not record", async () => {
    let received = '';
    const upstreamPort = await listen(createServer((s) => s.on('data', (c: Buffer) => (received += c.toString())).on('error', () => undefined)));
    // A recording the test drives: each chunk waits until the test records it, or fails it.
    const waiting: { chunk: string; record: () => void; fail: (err: Error) => void }[] = [];
    const { recorder } = recordedEvents({
      tap: () => ({
        upRecorded: (chunk) => new Promise<void>((record, fail) => waiting.push({ chunk: chunk.toString(), record, fail })),
        down: () => undefined,
      }),
    });
    const socket = await dial(await listen(streamServer(tcpProtocol(), tcpConnection(`tcp://127.0.0.1:${upstreamPort}`), recorder)));
    socket.on('error', () => undefined);

    socket.write('recorded;');
    await expect.poll(() => waiting.length).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(received).toBe('');
    waiting[0]!.record();
    await expect.poll(() => received).toBe('recorded;');

    socket.write('unrecorded;');
    await expect.poll(() => waiting.length).toBe(2);
    const closed = new Promise((resolve) => socket.on('close', resolve));
    waiting[1]!.fail(new Error('disk full'));
    await closed;
    expect(received).toBe('recorded;');
  });

  it('echoes bytes both ways', async () => {
    const upstreamPort = await listen(createServer((s) => s.pipe(s)));
    const gw = await startGateway(upstreamPort);
    const socket = await dial(gw.port);

    socket.write('hello');
    const [echo] = (await once(socket, 'data')) as [Buffer];

    expect(echo.toString()).toBe('hello');
  });

  it('carries 64 MiB each way byte-exact', async () => {
    const upstreamPort = await listen(createServer({ allowHalfOpen: true }, (s) => s.pipe(s)));
    const gw = await startGateway(upstreamPort);
    const socket = await dial(gw.port);
    const { sent, received } = await echoNumberedBlocks(socket, 64);

    expect(received.bytes).toBe(64 * 1024 * 1024);
    expect(received.digest()).toBe(sent);
    const end = gw.events.find((e) => e.type === 'exchange.end');
    expect(end).toMatchObject({ requestBytes: 64 * 1024 * 1024, responseBytes: 64 * 1024 * 1024 });
  });

  it.each([false, true])('honours half-close: the caller ends its side and still reads the answer (recorded: %s)', async (tap) => {
    const upstreamPort = await listen(
      createServer({ allowHalfOpen: true }, (s) => {
        let n = 0;
        s.on('data', (c: Buffer) => (n += c.length));
        s.on('end', () => setTimeout(() => s.end(`got ${n} bytes after your FIN`), 50));
      }),
    );
    const gw = await startGateway(upstreamPort, alice, { tap });
    const socket = await dial(gw.port);
    const answer = collect(socket);

    socket.end('twelve bytes');

    expect((await answer).toString()).toBe('got 12 bytes after your FIN');
  });

  it('resets the stream when the upstream is down', async () => {
    const closed = createServer();
    const port = await listen(closed);
    await new Promise((r) => closed.close(r));
    const gw = await startGateway(port);

    expect(await dialUntilClosed(gw.port)).toEqual({ reset: true, bytesRead: 0 });
    expect(gw.events).toMatchObject([{ type: 'exchange.request' }, { type: 'exchange.error', code: 'ERR_UPSTREAM_UNAVAILABLE' }]);
  });

  it('refuses a caller outside the allowed groups before connecting upstream', async () => {
    let upstreamAccepted = 0;
    const upstreamPort = await listen(createServer((s) => (upstreamAccepted++, s.end())));
    const gw = await startGateway(upstreamPort, { ...alice, groups: ['sales'] });

    expect(await dialUntilClosed(gw.port)).toEqual({ reset: true, bytesRead: 0 });
    expect(upstreamAccepted).toBe(0);
    // Refused like any exchange of the pipeline: its request on record (judged by no policy), then the refusal.
    expect(gw.events).toMatchObject([
      { type: 'exchange.request', exchange: { method: 'CONNECT' } },
      { type: 'exchange.error', code: 'ERR_CONNECTION_FORBIDDEN', end: { status: 0, complete: false } },
    ]);
    expect(gw.events[0]).not.toHaveProperty('decision');
  });

  it('refuses a stream a policy rule would hold for review, on the record, before connecting upstream', async () => {
    let upstreamAccepted = 0;
    const upstreamPort = await listen(createServer((s) => (upstreamAccepted++, s.end())));
    const protocol = tcpProtocol({ policy: { decide: async () => ({ action: 'review', rule: 'streams-need-review', reviewers: ['ml-leads'] }) } });
    const { recorder, events } = recordedEvents();
    const port = await listen(streamServer(protocol, tcpConnection(`tcp://127.0.0.1:${upstreamPort}`), recorder));

    expect(await dialUntilClosed(port)).toEqual({ reset: true, bytesRead: 0 });
    expect(upstreamAccepted).toBe(0);
    // The same stages and the same records as an HTTP refusal: the decision, the request, the refusal.
    expect(events).toMatchObject([
      { type: 'policy.decision', decision: { action: 'review', rule: 'streams-need-review' } },
      { type: 'exchange.request', decision: { action: 'review' } },
      {
        type: 'exchange.error',
        code: 'ERR_POLICY_DENIED',
        message: 'Policy "streams-need-review" requires a review, which tcp connection "db" cannot wait for',
        end: { status: 0, complete: false },
      },
    ]);
  });
});
