import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { Socket } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { SluiceError } from '../../shared/errors.js';
import type { ControlMessage } from '../../shared/tunnel/control.js';
import { encodeFrame } from '../../shared/tunnel/frames.js';
import { TunnelMux, type TunnelMuxOptions } from '../../shared/tunnel/mux.js';
import { StreamResetError, TunnelStream } from '../../shared/tunnel/mux-stream.js';
import { until } from '../helpers/gateway.js';
import { echoNumberedBlocks, hashArrivals } from '../helpers/numbered-blocks.js';

type MuxOptions = Omit<TunnelMuxOptions, 'role'>;

interface Gateway {
  url: string;
  muxes: TunnelMux[];
  /** The socket each connection was upgraded on, in the order of `muxes`. */
  upgradeSockets: Socket[];
}

/** A real ws server on 127.0.0.1:0 whose every connection gets a server-side TunnelMux. */
async function startGateway(onStream: (stream: TunnelStream, mux: TunnelMux) => void, options: MuxOptions = {}): Promise<Gateway> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const muxes: TunnelMux[] = [];
  const upgradeSockets: Socket[] = [];
  wss.on('connection', (ws, req) => {
    const mux = new TunnelMux(ws, { role: 'server', upgradeSocket: req.socket, ...options });
    muxes.push(mux);
    upgradeSockets.push(req.socket);
    mux.on('stream', (stream) => {
      // a reset or a closed tunnel fails streams; tests that care listen for it themselves
      stream.on('error', () => {});
      onStream(stream, mux);
    });
  });
  onTestFinished(async () => {
    for (const client of wss.clients) client.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });
  const { port } = wss.address() as { port: number };
  return { url: `ws://127.0.0.1:${port}`, muxes, upgradeSockets };
}

/** An open WebSocket and the socket it was upgraded on (ws keeps its own reference private). */
async function openSocket(url: string): Promise<{ ws: WebSocket; upgradeSocket: Socket }> {
  const ws = new WebSocket(url);
  onTestFinished(() => ws.terminate());
  const [response] = (await Promise.all([once(ws, 'upgrade'), once(ws, 'open')]))[0] as [http.IncomingMessage];
  return { ws, upgradeSocket: response.socket };
}

async function connect(url: string, options: MuxOptions = {}): Promise<{ mux: TunnelMux; ws: WebSocket; upgradeSocket: Socket }> {
  const { ws, upgradeSocket } = await openSocket(url);
  return { mux: new TunnelMux(ws, { role: 'client', upgradeSocket, ...options }), ws, upgradeSocket };
}

/** Opens a stream whose failure the test does not await (a closing tunnel fails its streams). */
function open(mux: TunnelMux, meta: Record<string, unknown> = {}): TunnelStream {
  const stream = mux.openStream(meta);
  stream.on('error', () => {});
  return stream;
}

function echo(stream: TunnelStream): void {
  pipeline(stream, stream, () => {});
}

/** Everything the stream delivers until END (not `for await`, which would destroy a half-open stream). */
function collect(stream: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/**
 * Counts the writes a socket hands to the kernel: Writable calls `_write` for a lone chunk and `_writev`
 * for what piled up while the socket was corked, once per write either way.
 */
function countWrites(socket: Socket): { writes: number } {
  type Hook = (this: Socket, ...args: unknown[]) => void;
  const hooks = socket as unknown as { _write: Hook; _writev: Hook };
  const counter = { writes: 0 };
  for (const name of ['_write', '_writev'] as const) {
    const original = hooks[name];
    hooks[name] = function (this: Socket, ...args: unknown[]) {
      counter.writes++;
      original.apply(this, args);
    };
  }
  return counter;
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

function streamError(stream: Duplex): Promise<Error> {
  return new Promise((resolve) => stream.once('error', resolve));
}

async function echoRoundTrip(url: string): Promise<void> {
  const { mux } = await connect(url);
  const stream = open(mux, { kind: 'echo' });
  const received = collect(stream);
  stream.end('still working');
  expect((await received).toString()).toBe('still working');
  mux.close();
}

describe('TunnelMux over a real WebSocket', () => {
  it('echoes many concurrent streams byte-exact', async () => {
    const gateway = await startGateway(echo);
    const { mux } = await connect(gateway.url);
    const results = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const payload = randomBytes(64 * 1024 + ((i * 104_729) % (960 * 1024)));
        const stream = open(mux, { client: `127.0.0.1:${50_000 + i}` });
        const received = collect(stream);
        // uneven chunks, from a single byte up, so frames split and coalesce in every way
        for (let at = 0, n = 1; at < payload.length; at += n, n = (n * 7 + 13) % 100_000 || 1) {
          if (!stream.write(payload.subarray(at, at + n))) await once(stream, 'drain');
        }
        stream.end();
        return { sent: sha256(payload), received: sha256(await received) };
      }),
    );
    for (const { sent, received } of results) expect(received).toBe(sent);
    expect(mux.stats.streamsOpened).toBe(40);
    expect(mux.stats.bytesOut).toBe(mux.stats.bytesIn);
    await until(() => mux.stats.streamsOpen === 0 && gateway.muxes[0]!.stats.streamsOpen === 0, 'streams to close');
  });

  it('sends the frames of one turn of the event loop in one write to the socket it was given, on both ends', async () => {
    const gateway = await startGateway(echo);
    const { mux, upgradeSocket } = await connect(gateway.url);
    const client = countWrites(upgradeSocket);
    const server = countWrites(gateway.upgradeSockets[0]!);
    const streams = Array.from({ length: 8 }, () => open(mux));
    const echoed = Promise.all(streams.map(collect));
    // one turn: 8 OPEN, 8 DATA and 8 END frames from the client; the gateway echoes 8 DATA and 8 END
    streams.forEach((stream, i) => stream.end(`stream ${i}`));
    expect((await echoed).map(String)).toEqual(streams.map((_, i) => `stream ${i}`));
    expect(client.writes).toBe(1);
    // the gateway answers in the turn that read the client's frames; a second read would mean a second turn
    expect(server.writes).toBeGreaterThanOrEqual(1);
    expect(server.writes).toBeLessThanOrEqual(2);
  });

  it('stays byte-exact when the WebSocket buffer bound holds streams back', async () => {
    const options = { maxBufferedAmount: 16 * 1024, window: 64 * 1024, maxFrame: 8 * 1024 };
    const gateway = await startGateway(echo, options);
    const { mux } = await connect(gateway.url, options);
    const results = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const payload = randomBytes(512 * 1024);
        const stream = open(mux);
        const received = collect(stream);
        stream.end(payload);
        return sha256(payload) === sha256(await received);
      }),
    );
    expect(results.every(Boolean)).toBe(true);
  });

  it('carries 64 MiB through one stream, both ways, byte-exact', async () => {
    const gateway = await startGateway(echo);
    const { mux } = await connect(gateway.url);
    const stream = open(mux);
    const { sent, received } = await echoNumberedBlocks(stream, 64);
    expect(received.bytes).toBe(64 * 1024 * 1024);
    expect(received.digest()).toBe(sent);
  });

  it('half-closes each direction on its own', async () => {
    let serverReceived = '';
    const gateway = await startGateway((stream) => {
      if (stream.meta.kind === 'request') {
        // answer only after the client's END: the request is complete, the stream still writable
        void collect(stream).then((request) => stream.end(`got ${request.toString()}`));
      } else {
        // the gateway ends its direction first, then keeps reading what the client still sends
        stream.end('bye');
        void collect(stream).then((rest) => (serverReceived = rest.toString()));
      }
    });
    const { mux } = await connect(gateway.url);

    const request = open(mux, { kind: 'request' });
    const response = collect(request);
    request.end('question');
    expect((await response).toString()).toBe('got question');

    const greeting = open(mux, { kind: 'greeting' });
    expect((await collect(greeting)).toString()).toBe('bye');
    // our direction is still open after the gateway's END
    expect(greeting.writable).toBe(true);
    greeting.end('late words');
    await until(() => serverReceived === 'late words', 'the gateway to read after its own END');
  });

  it('keeps a prompt stream fast while another stream has a slow reader', async () => {
    const window = 64 * 1024;
    let firehose: TunnelStream | undefined;
    const gateway = await startGateway(
      (stream) => {
        if (stream.meta.kind === 'echo') return echo(stream);
        firehose = stream;
        let sent = 0;
        // 8 MiB on offer: far more than the window, so only flow control keeps it off the wire
        const source = new Readable({
          read() {
            if (sent >= 8 * 1024 * 1024) return void this.push(null);
            sent += 64 * 1024;
            this.push(Buffer.alloc(64 * 1024, 0x61));
          },
        });
        pipeline(source, stream, () => {});
      },
      { window },
    );
    const { mux } = await connect(gateway.url, { window });

    const slow = open(mux, { kind: 'firehose' });
    let slowReads = 0;
    let slowBytes = 0;
    const reader = setInterval(() => {
      const chunk = slow.read(16 * 1024) as Buffer | null;
      if (chunk) {
        slowReads++;
        slowBytes += chunk.length;
      }
    }, 50);
    onTestFinished(() => clearInterval(reader));
    await until(() => slow.readableLength === window, 'the slow stream to fill its window');

    const prompt = open(mux, { kind: 'echo' });
    const readsBefore = slowReads;
    for (let i = 0; i < 20; i++) {
      const reply = once(prompt, 'data');
      prompt.write(`ping ${i}`);
      expect(String((await reply)[0])).toBe(`ping ${i}`);
    }
    // 20 round trips finished while the slow reader made only a few of its 50 ms reads:
    // the prompt stream never queued behind the slow one's megabytes
    expect(slowReads - readsBefore).toBeLessThan(10);
    // and the slow stream got no further than its window ahead of its reader
    expect(slow.readableLength).toBeLessThanOrEqual(window);
    expect(firehose!.bytesSent).toBeLessThanOrEqual(slowBytes + window);
    clearInterval(reader);
    prompt.end();
  });

  it('stops a writer whose peer never reads: write() returns false, its callback waits, memory stays at one window', async () => {
    const window = 128 * 1024;
    let idle: TunnelStream | undefined;
    const gateway = await startGateway((stream) => (idle = stream), { window });
    const { mux } = await connect(gateway.url, { window });
    const stream = open(mux);
    let called = false;
    expect(stream.write(Buffer.alloc(1024 * 1024, 1), () => (called = true))).toBe(false);
    await until(() => idle?.readableLength === window, 'the window to fill');
    await sleep(200);
    expect(called).toBe(false);
    expect(mux.stats.bytesOut).toBe(window);
    expect(idle!.readableLength).toBe(window);
    expect(gateway.muxes[0]!.stats.bytesIn).toBe(window);

    // reading releases the writer
    const all = collect(idle!);
    await until(() => called, 'the write callback');
    stream.end();
    expect((await all).length).toBe(1024 * 1024);
  });

  it('holds a 1 GiB pipe into a never-reading peer at about one window', async () => {
    const window = 256 * 1024;
    const gateway = await startGateway(() => {}, { window });
    const { mux } = await connect(gateway.url, { window });
    const stream = open(mux);
    const chunk = Buffer.alloc(64 * 1024, 7);
    let produced = 0;
    const source = new Readable({
      read() {
        if (produced >= 1024 * 1024 * 1024) return void this.push(null);
        produced += chunk.length;
        this.push(chunk);
      },
    });
    pipeline(source, stream, () => {});
    await until(() => mux.stats.bytesOut === window, 'the window to fill');
    await sleep(300);
    expect(mux.stats.bytesOut).toBe(window);
    // the window, plus the chunks in the source's and the stream's buffers and the one being written
    expect(produced).toBeLessThanOrEqual(window + 6 * chunk.length);
    source.destroy();
  });

  it('propagates RESET with its code both ways and ignores frames that crossed it', async () => {
    const serverErrors: Error[] = [];
    const gateway = await startGateway((stream) => {
      if (stream.meta.kind === 'echo') stream.on('error', (err) => serverErrors.push(err));
      if (stream.meta.kind === 'upstream-down') {
        stream.destroy(new SluiceError('ERR_UPSTREAM_UNAVAILABLE'));
      } else if (stream.meta.kind === 'reset-on-data') {
        stream.once('data', () => stream.destroy());
      } else {
        echo(stream);
      }
    });
    const { mux } = await connect(gateway.url);

    // gateway → client: a SluiceError arrives as the same code
    const down = open(mux, { kind: 'upstream-down' });
    const downError = await streamError(down);
    expect(downError).toBeInstanceOf(SluiceError);
    expect((downError as SluiceError).code).toBe('ERR_UPSTREAM_UNAVAILABLE');

    // client → gateway: any other error arrives as ECONNRESET carrying the reset code and the error's code
    const refused = open(mux, { kind: 'echo' });
    refused.write('x');
    await until(() => gateway.muxes[0]!.stats.bytesIn === 1, 'the first byte');
    refused.on('error', () => {});
    refused.destroy(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8000'), { code: 'ECONNREFUSED' }));
    await until(() => serverErrors.length === 1, 'the gateway to see the reset');
    expect(serverErrors[0]).toBeInstanceOf(StreamResetError);
    expect(serverErrors[0]).toMatchObject({ code: 'ECONNRESET', resetCode: 1 });
    expect(serverErrors[0]!.message).toContain('ECONNREFUSED');

    // the gateway resets while the client is still sending: the frames in flight are ignored
    const busy = open(mux, { kind: 'reset-on-data' });
    const busyError = streamError(busy);
    const megabyte = Buffer.alloc(1024 * 1024, 3);
    busy.write(megabyte);
    busy.write(megabyte);
    expect(await busyError).toMatchObject({ code: 'ECONNRESET', resetCode: 0 });

    expect(gateway.muxes[0]!.isClosed).toBe(false);
    const check = open(mux, { kind: 'echo' });
    const back = collect(check);
    check.end('alive');
    expect((await back).toString()).toBe('alive');
    expect(mux.stats.streamsOpen).toBe(0);
  });

  it('refuses streams over maxStreams with RESET 4429 and keeps the tunnel up', async () => {
    const gateway = await startGateway(echo, { maxStreams: 2 });
    const { mux } = await connect(gateway.url);
    const first = open(mux);
    const second = open(mux);
    const third = open(mux);
    const refusal = await streamError(third);
    expect(refusal).toBeInstanceOf(SluiceError);
    expect((refusal as SluiceError).code).toBe('ERR_TUNNEL_LIMIT');
    expect(gateway.muxes[0]!.stats).toMatchObject({ streamsOpen: 2, streamsRefused: 1 });

    const firstBack = collect(first);
    first.end('one');
    expect((await firstBack).toString()).toBe('one');
    await until(() => gateway.muxes[0]!.stats.streamsOpen === 1, 'the first stream to close on the gateway');
    const fourth = open(mux);
    const fourthBack = collect(fourth);
    fourth.end('four');
    expect((await fourthBack).toString()).toBe('four');
    second.destroy();
  });

  it('throws ERR_TUNNEL_LIMIT when the client itself is at maxStreams', async () => {
    const gateway = await startGateway(echo);
    const { mux } = await connect(gateway.url, { maxStreams: 1 });
    open(mux);
    let thrown: unknown;
    try {
      open(mux);
    } catch (err) {
      thrown = err;
    }
    expect((thrown as SluiceError).code).toBe('ERR_TUNNEL_LIMIT');
  });

  it.each<[string, (ws: WebSocket) => void]>([
    ['an unknown frame type', (ws) => ws.send(Buffer.from([9, 0, 0, 0, 1]))],
    ['a truncated header', (ws) => ws.send(Buffer.from([2, 0]))],
    ['DATA for a stream never opened', (ws) => ws.send(encodeFrame({ type: 'data', streamId: 7, data: Buffer.from('x') }))],
    ['a second OPEN of a live stream', (ws) => ws.send(encodeFrame({ type: 'open', streamId: 1, meta: {} }))],
    ['an OPEN whose id goes backwards', (ws) => {
      ws.send(encodeFrame({ type: 'open', streamId: 5, meta: {} }));
      ws.send(encodeFrame({ type: 'open', streamId: 4, meta: {} }));
    }],
    ['DATA beyond the granted window', (ws) => {
      ws.send(encodeFrame({ type: 'data', streamId: 1, data: Buffer.alloc(1024) }));
      ws.send(encodeFrame({ type: 'data', streamId: 1, data: Buffer.alloc(1) }));
    }],
    ['DATA after END', (ws) => {
      ws.send(encodeFrame({ type: 'end', streamId: 1 }));
      ws.send(encodeFrame({ type: 'data', streamId: 1, data: Buffer.from('x') }));
    }],
    ['a WINDOW that overflows the credit', (ws) => ws.send(encodeFrame({ type: 'window', streamId: 1, increment: 0x7fff_ffff }))],
    ['a text message that is not JSON', (ws) => ws.send('hello?')],
    ['a control message of an unknown type', (ws) => ws.send(JSON.stringify({ type: 'exec', cmd: 'id' }))],
    ['a control message over 64 KiB', (ws) => ws.send(JSON.stringify({ type: 'notice', level: 'info', message: 'x'.repeat(70_000) }))],
    ['an OPEN with a stream id 0', (ws) => ws.send(Buffer.from([1, 0, 0, 0, 0, 0x7b, 0x7d]))],
  ])('closes with 4400 on %s, fails its streams, and other tunnels carry on', async (_name, misbehave) => {
    const opened: TunnelStream[] = [];
    const gateway = await startGateway((stream) => (stream.meta.kind === 'echo' ? echo(stream) : opened.push(stream)), { window: 1024 });
    const { ws: raw } = await openSocket(gateway.url);
    const texts: string[] = [];
    raw.on('message', (data, isBinary) => {
      if (!isBinary) texts.push(String(data));
    });
    raw.send(encodeFrame({ type: 'open', streamId: 1, meta: { client: 'raw' } }));
    await until(() => opened.length === 1, 'the gateway to open stream 1');
    const failed = streamError(opened[0]!);
    // not events.once: it would reject on the mux's 'error', which this test provokes
    const serverClosed = new Promise((resolve) => gateway.muxes[0]!.once('close', resolve));

    misbehave(raw);
    const [code] = (await once(raw, 'close')) as [number, Buffer];
    expect(code).toBe(4400);
    expect(JSON.parse(texts[0]!)).toMatchObject({ type: 'error', code: 'ERR_TUNNEL_PROTOCOL' });
    expect(await failed).toMatchObject({ code: 'ERR_TUNNEL_PROTOCOL' });
    await serverClosed;
    expect(gateway.muxes[0]!.stats.streamsOpen).toBe(0);

    await echoRoundTrip(gateway.url);
  });

  it('fails a client that receives an OPEN: only the client opens streams', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    onTestFinished(() => new Promise<void>((resolve) => wss.close(() => resolve())));
    wss.on('connection', (ws) => {
      ws.send(encodeFrame({ type: 'open', streamId: 1, meta: {} }));
    });
    const { port } = wss.address() as { port: number };
    const ws = new WebSocket(`ws://127.0.0.1:${port}`);
    onTestFinished(() => ws.terminate());
    const errors: Error[] = [];
    // attach within 'open' itself: the OPEN may arrive in the same read as the upgrade response
    const mux = await new Promise<TunnelMux>((resolve) =>
      ws.once('open', () => {
        const created = new TunnelMux(ws, { role: 'client' });
        created.on('error', (err) => errors.push(err));
        resolve(created);
      }),
    );
    const [code] = await new Promise<[number, string]>((resolve) => mux.once('close', (...args) => resolve(args)));
    expect(code).toBe(4400);
    expect(errors[0]).toMatchObject({ code: 'ERR_TUNNEL_PROTOCOL' });
  });

  it('destroys every stream with ECONNRESET when the WebSocket closes', async () => {
    const gateway = await startGateway(() => {});
    const { mux } = await connect(gateway.url);
    const streams = [open(mux), open(mux)];
    const errors = streams.map(streamError);
    await until(() => gateway.muxes[0]?.stats.streamsOpen === 2, 'the streams to open');
    const closed = once(mux, 'close');
    gateway.muxes[0]!.close(1001, 'going away');
    const [code, reason] = (await closed) as [number, string];
    expect([code, reason]).toEqual([1001, 'going away']);
    for (const err of await Promise.all(errors)) expect(err).toMatchObject({ code: 'ECONNRESET', closeCode: 1001 });
    expect(mux.isClosed).toBe(true);
    expect(() => mux.openStream()).toThrow(StreamResetError);
  });

  it('carries control messages both ways and leaves ping/pong to ws', async () => {
    const received: ControlMessage[] = [];
    const gateway = await startGateway(() => {});
    const { mux, ws } = await connect(gateway.url);
    mux.on('control', (message) => received.push(message));
    const server = gateway.muxes[0]!;
    const serverReceived = once(server, 'control');
    expect(
      server.sendControl({
        type: 'hello',
        version: 1,
        session_id: 's_1',
        connection: { name: 'llm', type: 'http' },
        window: 262144,
        max_frame: 1048576,
        max_streams: 256,
      }),
    ).toBe(true);
    mux.sendControl({ type: 'reauth', token: 'fresh' });
    expect((await serverReceived)[0]).toEqual({ type: 'reauth', token: 'fresh' });
    await until(() => received.length === 1, 'the hello');
    expect(received[0]).toMatchObject({ type: 'hello', session_id: 's_1' });

    const pong = once(ws, 'pong');
    ws.ping(Buffer.from('are you there'));
    expect(String((await pong)[0])).toBe('are you there');
    expect(mux.isClosed).toBe(false);
  });

  it('rejects invalid options and stream metadata over the bound', async () => {
    const gateway = await startGateway(() => {});
    const { ws } = await openSocket(gateway.url);
    expect(() => new TunnelMux(ws, { role: 'client', window: 0 })).toThrow(RangeError);
    expect(() => new TunnelMux(ws, { role: 'client', maxFrame: 1.5 })).toThrow(RangeError);
    const mux = new TunnelMux(ws, { role: 'client', maxMetadata: 64 });
    expect(() => mux.openStream({ client: 'x'.repeat(100) })).toThrow(RangeError);
    // a refused open uses no id: the next stream is still 1
    expect(open(mux).id).toBe(1);
  });
});

describe('Node http over TunnelStreams', () => {
  async function httpGateway(): Promise<{ gateway: Gateway; connections: TunnelStream[]; requests: string[] }> {
    const connections: TunnelStream[] = [];
    const requests: string[] = [];
    // never listens: the tunnel hands it connections, as the HTTP protocol module will
    const server = http.createServer((req, res) => {
      const received = hashArrivals(req);
      req.on('end', () => {
        requests.push(`${req.method} ${req.url}`);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ method: req.method, url: req.url, length: received.bytes, sha256: received.digest(), remote: req.socket.remoteAddress }));
      });
    });
    onTestFinished(() => {
      server.close();
    });
    const gateway = await startGateway((stream) => {
      stream.remoteAddress = '127.0.0.1';
      connections.push(stream);
      server.emit('connection', stream);
    });
    return { gateway, connections, requests };
  }

  function request(options: http.RequestOptions, body?: Buffer): Promise<{ res: http.IncomingMessage; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = http.request(options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ res, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  it('serves a request written by http.request over a client stream', async () => {
    const { gateway } = await httpGateway();
    const { mux } = await connect(gateway.url);
    const body = randomBytes(3 * 1024 * 1024);
    const { res, body: answer } = await request(
      { method: 'POST', path: '/v1/chat/completions', headers: { host: 'llm' }, createConnection: () => mux.openStream({ client: 'test' }) },
      body,
    );
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(answer.toString())).toEqual({
      method: 'POST',
      url: '/v1/chat/completions',
      length: body.length,
      sha256: sha256(body),
      remote: '127.0.0.1',
    });
  });

  it('keeps the connection alive across requests on one stream', async () => {
    const { gateway, connections, requests } = await httpGateway();
    const { mux } = await connect(gateway.url);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agent.createConnection = () => mux.openStream({ client: 'agent' });
    onTestFinished(() => agent.destroy());
    for (let i = 0; i < 3; i++) {
      const body = Buffer.from(`request ${i}`);
      const { res, body: answer } = await request({ method: 'POST', path: `/r/${i}`, agent }, body);
      expect(res.headers.connection).toBe('keep-alive');
      expect(JSON.parse(answer.toString())).toMatchObject({ url: `/r/${i}`, sha256: sha256(body) });
    }
    expect(requests).toEqual(['POST /r/0', 'POST /r/1', 'POST /r/2']);
    expect(connections).toHaveLength(1);
    expect(mux.stats.streamsOpened).toBe(1);
  });

  it('answers a malformed request with 400, as on a TCP socket', async () => {
    const { gateway } = await httpGateway();
    const { mux } = await connect(gateway.url);
    const stream = open(mux);
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    // like node on a TCP socket, the server writes its 400 and then destroys: DATA, then RESET
    const error = streamError(stream);
    stream.write('NOT HTTP AT ALL\r\n\r\n');
    expect(await error).toMatchObject({ code: 'ECONNRESET', resetCode: 1 });
    expect(Buffer.concat(chunks).toString()).toMatch(/^HTTP\/1\.1 400 Bad Request/);
  });
});
