/**
 * Volume through the whole tunnel, as separate processes: the gateway (`sluice serve`) and the CLI
 * (`sluice connect`) are children of this test, so their memory can be read; the IdP and the TCP upstreams
 * run here. TCP connections only: what goes in comes out, byte for byte, and a slow reader slows its own
 * writer without slowing its neighbours or growing anyone's memory.
 *
 * Spawns bin/sluice, which runs dist/ as the load project's global setup compiled it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startEchoServer, type RunningEchoServer } from '../../server/demo/echo-server.js';
import { spawnCli, type SpawnedCli } from '../helpers/cli-process.js';
import { gatewayFixture, until } from '../helpers/gateway.js';
import { writeNumberedBlocks } from '../helpers/numbered-blocks.js';
import { signToken, type TestIdp } from '../helpers/oidc.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Resident memory of a process in bytes (VmRSS). */
function rss(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** The largest RSS of each process while sampling runs (every 100 ms). */
function sampleRss(pids: Record<string, number>): { stop(): Record<string, number> } {
  const peak: Record<string, number> = {};
  const take = () => {
    for (const [name, pid] of Object.entries(pids)) peak[name] = Math.max(peak[name] ?? 0, rss(pid));
  };
  take();
  const timer = setInterval(take, 100);
  return {
    stop() {
      clearInterval(timer);
      take();
      return peak;
    },
  };
}

/**
 * One TCP upstream, two behaviours chosen by the first byte a connection sends: `E` echoes the rest,
 * `F` is a firehose that writes 1 GiB of a repeated pseudo-random 1 MiB block as fast as the socket takes it.
 */
interface MixedUpstream {
  address: string;
  block: Buffer;
  /** Per firehose connection: bytes the kernel accepted so far, and whether the socket closed. */
  firehoses: Array<{ accepted(): number; closed: boolean }>;
  close(): Promise<void>;
}

async function startMixedUpstream(): Promise<MixedUpstream> {
  const block = randomBytes(MiB);
  const sockets = new Set<Socket>();
  const firehoses: MixedUpstream['firehoses'] = [];
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.once('data', (first: Buffer) => {
      if (first[0] === 0x45 /* E */) {
        if (first.length > 1) socket.write(first.subarray(1));
        socket.pipe(socket);
        return;
      }
      let handed = 0;
      const state = { accepted: () => handed - socket.writableLength, closed: false };
      firehoses.push(state);
      socket.on('close', () => (state.closed = true));
      socket.resume();
      const pump = (): void => {
        while (handed < GiB && !socket.destroyed) {
          handed += block.length;
          if (!socket.write(block)) {
            socket.once('drain', pump);
            return;
          }
        }
        socket.end();
      };
      pump();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    block,
    firehoses,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const gateways = gatewayFixture();
let idp: TestIdp;
let echo: RunningEchoServer;
let mixed: MixedUpstream;
let gateway: SpawnedCli;
let gatewayUrl: string;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-load-'));
  idp = gateways.idp;
  echo = await startEchoServer();
  mixed = await startMixedUpstream();
  const config = join(dir, 'sluice.yaml');
  await writeFile(
    config,
    `listen: 127.0.0.1:0
identity:
  issuer: ${idp.issuer}
  audience: ${idp.audience}
  cli_client_id: ${idp.cliClientId}
storage:
  dir: ${join(dir, 'data')}
  master_key: ${randomBytes(32).toString('base64')}
connections:
  - name: echo
    type: tcp
    upstream: tcp://${echo.address}
    allow_groups: [ml-eng]
  - name: mixed
    type: tcp
    upstream: tcp://${mixed.address}
    allow_groups: [ml-eng]
`,
  );
  gateway = spawnCli(['serve', '--config', config]);
  await gateway.waitForOutput(/sluice gateway ready/);
  const ready = gateway
    .stdout()
    .split('\n')
    .find((l) => l.includes('sluice gateway ready'))!;
  gatewayUrl = (JSON.parse(ready) as { url: string }).url;
});

afterAll(async () => {
  if (gateway) {
    gateway.kill('SIGTERM');
    const timer = setTimeout(() => gateway.kill('SIGKILL'), 5000);
    await gateway.exited;
    clearTimeout(timer);
  }
  await mixed?.close();
  await echo?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** `sluice connect NAME` as alice; resolves with the child and its local port. */
async function sluiceConnect(name: string): Promise<{ cli: SpawnedCli; port: number }> {
  const home = await mkdtemp(join(dir, 'cli-'));
  const token = await signToken(idp.signingKey, idp.claimsFor('alice'));
  const cli = spawnCli(['connect', name, '--port', '0', '--json'], {
    env: { SLUICE_TOKEN: token, SLUICE_GATEWAY: gatewayUrl, XDG_CONFIG_HOME: home, SLUICE_TOKEN_STORE: 'file' },
  });
  onTestFinished(async () => {
    cli.kill('SIGTERM');
    await Promise.race([cli.exited, sleep(5000)]);
    cli.kill('SIGKILL');
  });
  await cli.waitForOutput(/"event":"ready"/);
  const ready = JSON.parse(cli.stdout().split('\n').find((l) => l.includes('"ready"'))!) as { local_url: string };
  return { cli, port: Number(ready.local_url.split(':').at(-1)) };
}

async function dial(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
  onTestFinished(() => void socket.destroy());
  await once(socket, 'connect');
  return socket;
}

/** Writes `payload` and resolves with the echo of exactly that many bytes. */
function roundTrip(socket: Socket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const onData = (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= payload.length) {
        socket.off('data', onData);
        socket.off('error', reject);
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(payload);
  });
}

describe('TCP through sluice connect', () => {
  it('echoes a round trip, then 256 MiB byte-exact, with the echo still arriving after the caller half-closed', { timeout: 60_000 }, async () => {
    const { cli, port } = await sluiceConnect('echo');

    const socket = await dial(port);
    const hello = await roundTrip(socket, Buffer.from('hello through the tunnel\n'));
    expect(hello.toString()).toBe('hello through the tunnel\n');
    socket.end();

    const big = await dial(port);
    const total = 256 * MiB;
    const received = createHash('sha256');
    let receivedBytes = 0;
    let finished = false;
    let afterFinish = 0;
    let error: Error | undefined;
    big.on('error', (err) => (error = err));
    big.on('data', (c: Buffer) => {
      received.update(c);
      receivedBytes += c.length;
      if (finished) afterFinish += c.length;
    });
    const ended = once(big, 'end');
    big.once('finish', () => (finished = true));
    const pids = { gateway: gateway.child.pid!, cli: cli.child.pid! };
    const baseline = { gateway: rss(pids.gateway), cli: rss(pids.cli) };
    const sampler = sampleRss(pids);
    const started = Date.now();
    const sent = await writeNumberedBlocks(big, total / MiB);
    big.end();
    await ended;
    const seconds = (Date.now() - started) / 1000;
    const peak = sampler.stop();
    const growth = { gateway: peak.gateway! - baseline.gateway, cli: peak.cli! - baseline.cli };
    console.log(
      JSON.stringify({
        test: 'tcp-256MiB-echo',
        seconds,
        MiBpsEachWay: Math.round(total / MiB / seconds),
        gatewayGrowthMiB: +(growth.gateway / MiB).toFixed(1),
        cliGrowthMiB: +(growth.cli / MiB).toFixed(1),
      }),
    );

    expect(error).toBeUndefined();
    expect(receivedBytes).toBe(total);
    expect(received.digest('hex')).toBe(sent);
    // our FIN went out first; the rest of the echo came after it, and then a clean end
    expect(afterFinish).toBeGreaterThan(0);
    // 256 MiB went through; neither process held on to it (the growth is allocator and GC slack, not data)
    expect(growth.gateway).toBeLessThan(128 * MiB);
    expect(growth.cli).toBeLessThan(128 * MiB);
  });

  it('half-close: the caller ends its side before reading anything and still receives the whole echo, then EOF', async () => {
    const { port } = await sluiceConnect('echo');
    const socket = await dial(port);
    const payload = randomBytes(100 * 1024);

    socket.end(payload);
    await once(socket, 'finish');
    await sleep(200);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    await once(socket, 'end');

    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });
});

describe('backpressure on one tunnel', () => {
  it('a slow reader of a 1 GiB firehose slows the firehose, not its neighbour, and no process grows by 128 MiB', { timeout: 60_000 }, async () => {
    const { cli, port } = await sluiceConnect('mixed');
    const neighbour = await dial(port);
    neighbour.write('E');
    // warm up both processes' code paths before the baseline
    for (let i = 0; i < 20; i++) await roundTrip(neighbour, randomBytes(1024));
    const pids = { gateway: gateway.child.pid!, cli: cli.child.pid! };
    const baseline = { gateway: rss(pids.gateway), cli: rss(pids.cli) };
    const sampler = sampleRss(pids);

    // the slow reader: a chunk, then 10 ms of nothing, until 64 MiB or 30 s
    const firehose = await dial(port);
    firehose.write('F');
    const target = 64 * MiB;
    let read = 0;
    let mismatch = -1;
    const deadline = Date.now() + 30_000;
    const slowRead = new Promise<void>((resolve, reject) => {
      firehose.on('data', (c: Buffer) => {
        // the stream is the block repeated: check every byte against its place in the block
        for (let at = 0; at < c.length && mismatch < 0; ) {
          const offset = (read + at) % MiB;
          const n = Math.min(c.length - at, MiB - offset);
          if (!c.subarray(at, at + n).equals(mixed.block.subarray(offset, offset + n))) mismatch = read + at;
          at += n;
        }
        read += c.length;
        if (read >= target || Date.now() > deadline) return resolve();
        firehose.pause();
        setTimeout(() => firehose.resume(), 10);
      });
      firehose.once('error', reject);
      firehose.once('end', () => reject(new Error('the firehose ended early')));
    });

    // meanwhile the neighbour stream on the same tunnel does round trips, one every 25 ms
    const latencies: number[] = [];
    let echoErrors = 0;
    let reading = true;
    const neighbourLoop = (async () => {
      for (let i = 0; reading && i < 5000; i++) {
        const payload = randomBytes(1024);
        const t0 = performance.now();
        const back = await roundTrip(neighbour, payload);
        latencies.push(performance.now() - t0);
        if (!back.equals(payload)) echoErrors++;
        await sleep(25);
      }
    })();
    await slowRead;
    reading = false;
    await neighbourLoop;
    const hose = mixed.firehoses.at(-1)!;
    const accepted = hose.accepted();
    const peak = sampler.stop();
    firehose.destroy();
    // the caller's reset travels through CLI and gateway to the upstream socket
    await until(() => hose.closed, 'the firehose upstream to be closed', 5000);
    const sorted = [...latencies].sort((a, b) => a - b);
    const report = {
      test: 'backpressure',
      readMiB: +(read / MiB).toFixed(1),
      firehoseAcceptedMiB: +(accepted / MiB).toFixed(1),
      roundTrips: latencies.length,
      p50ms: +sorted[Math.floor(sorted.length / 2)]!.toFixed(1),
      p99ms: +sorted[Math.floor(sorted.length * 0.99)]!.toFixed(1),
      maxms: +sorted.at(-1)!.toFixed(1),
      gatewayGrowthMiB: +((peak.gateway! - baseline.gateway) / MiB).toFixed(1),
      cliGrowthMiB: +((peak.cli! - baseline.cli) / MiB).toFixed(1),
    };
    console.log(JSON.stringify(report));

    expect(read).toBeGreaterThanOrEqual(target);
    expect(mismatch).toBe(-1);
    // the writer was held back: it got only a bounded amount ahead of the reader (kernel buffers, windows)
    expect(accepted - read).toBeLessThan(64 * MiB);
    expect(echoErrors).toBe(0);
    // Prompt, not stalled: typically ~1 ms, a few tens at worst on an idle machine. The bounds are loose
    // because the whole suite shares two cores (a 300 ms outlier was seen there); a neighbour stuck behind
    // the firehose would wait on the slow reader, for seconds, and fail both.
    expect(latencies.length).toBeGreaterThanOrEqual(100);
    expect(report.p50ms).toBeLessThan(50);
    expect(report.maxms).toBeLessThan(1000);
    expect(peak.gateway! - baseline.gateway).toBeLessThan(128 * MiB);
    expect(peak.cli! - baseline.cli).toBeLessThan(128 * MiB);
    // and the tunnel is still fine for the neighbour
    expect((await roundTrip(neighbour, Buffer.from('still here'))).toString()).toBe('still here');
  });
});
