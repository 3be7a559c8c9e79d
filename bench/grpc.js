// `grpc` part of `npm run bench`: gRPC calls through the gateway vs straight to the model. JSON on stdout,
// progress on stderr. Three paths to one KServe v2 model (bench/grpc-model.js, its own process):
//   direct  grpc-js client → model
//   tunnel  grpc-js client → `sluice connect triton` (local port) → WebSocket → gateway → model
//   listen  grpc-js client → the gateway's `grpc_listen` (bearer token and x-sluice-connection metadata) → model
// Figures: `unary_c1` (sequential ModelInfer: p50/p99 ms, added_p50_ms vs direct), `unary_c32` (32 calls
// in flight: calls per second, ratio_to_direct), `stream_ttfm` (sequential ModelStreamInfer: time to the
// first message and to the end, p50/p99, added_ttfm_p50_ms). Errors are counted per path.
// Env: BENCH_SECONDS (5) per measurement, BENCH_WARMUP_SECONDS (1), BENCH_GRPC_TOKENS (20 per stream),
// BENCH_GATEWAY_LOG_LEVEL (info), BENCH_CONNECT_TIMEOUT_SECONDS (30).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { AUDIENCE, startBenchIdentity } from './identity.js';
import { difference, round } from './load.js';
import { envNumber, forkChild, freePort, killAllHard, log, stopAll, waitForMessage, waitForReady } from './procs.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = fileURLToPath(new URL('.', import.meta.url));
const settings = {
  seconds: envNumber('BENCH_SECONDS', 5, { min: 1, max: 300 }),
  warmupSeconds: envNumber('BENCH_WARMUP_SECONDS', 1, { min: 0, max: 60 }),
  tokens: envNumber('BENCH_GRPC_TOKENS', 20, { min: 1, max: 10_000 }),
  connectTimeoutS: envNumber('BENCH_CONNECT_TIMEOUT_SECONDS', 30, { min: 1, max: 600 }),
};
const { inference } = grpc.loadPackageDefinition(
  protoLoader.loadSync(join(ROOT, 'server/protocols/grpc/kserve-v2.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
);
const REQUEST = { model_name: 'bench', id: 'r1', inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from('Say hello.')] } }] };

let tmp;
let idp;
process.on('exit', () => {
  killAllHard();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function percentile(sorted, p) {
  return sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(ms) {
  const sorted = [...ms].sort((a, b) => a - b);
  return { p50: round(percentile(sorted, 50), 3), p99: round(percentile(sorted, 99), 3), n: sorted.length };
}

function unaryOnce(client, metadata) {
  return new Promise((resolve) => {
    const t = process.hrtime.bigint();
    client.ModelInfer(REQUEST, metadata, (err, answer) => {
      const ok = err === null && answer?.outputs?.[0]?.contents?.bytes_contents?.[0]?.toString() === 'HELLO';
      resolve({ ok, ms: Number(process.hrtime.bigint() - t) / 1e6 });
    });
  });
}

function streamOnce(client, metadata) {
  return new Promise((resolve) => {
    const t = process.hrtime.bigint();
    let first;
    let messages = 0;
    const call = client.ModelStreamInfer(metadata);
    call.on('data', () => {
      messages++;
      first ??= Number(process.hrtime.bigint() - t) / 1e6;
    });
    call.on('error', () => undefined);
    call.on('status', (s) => resolve({ ok: s.code === 0 && messages === settings.tokens, first, ms: Number(process.hrtime.bigint() - t) / 1e6 }));
    call.write(REQUEST);
    call.end();
  });
}

/** Runs `once` from `concurrency` loops for `seconds`; the results of every call. */
async function loop(seconds, concurrency, once) {
  const results = [];
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) results.push(await once());
    }),
  );
  return results;
}

async function measurePath(target, metadata) {
  const client = new inference.GRPCInferenceService(target, grpc.credentials.createInsecure());
  try {
    // The channel connects before anything is timed.
    await unaryOnce(client, metadata);
    const out = { errors: 0 };
    await loop(settings.warmupSeconds, 1, () => unaryOnce(client, metadata));
    const c1 = await loop(settings.seconds, 1, () => unaryOnce(client, metadata));
    out.unary_c1 = summary(c1.filter((r) => r.ok).map((r) => r.ms));
    out.errors += c1.filter((r) => !r.ok).length;
    await loop(settings.warmupSeconds, 32, () => unaryOnce(client, metadata));
    const c32 = await loop(settings.seconds, 32, () => unaryOnce(client, metadata));
    out.unary_c32 = { calls_per_s: round(c32.filter((r) => r.ok).length / settings.seconds, 1) };
    out.errors += c32.filter((r) => !r.ok).length;
    await loop(settings.warmupSeconds, 1, () => streamOnce(client, metadata));
    const streams = await loop(settings.seconds, 1, () => streamOnce(client, metadata));
    const good = streams.filter((r) => r.ok);
    out.stream_ttfm = { ttfm: summary(good.map((r) => r.first)), complete: summary(good.map((r) => r.ms)) };
    out.errors += streams.length - good.length;
    return out;
  } finally {
    client.close();
  }
}

async function startTunnel(env) {
  const port = await freePort();
  const entry = forkChild('cli(triton)', join(BENCH, 'cli-guard.js'), [join(ROOT, 'bin', 'sluice.js'), 'triton', String(port)], { logFile: join(tmp, 'cli.log'), env });
  await waitForMessage(
    entry,
    (msg) => {
      if (msg?.type === 'exit') throw new Error(`sluice connect exited (code ${msg.code}) before it was ready`);
      return msg?.type === 'line' && msg.line.includes(`127.0.0.1:${port}`);
    },
    settings.connectTimeoutS * 1000,
    'sluice connect ready',
  );
  return { target: `127.0.0.1:${port}` };
}

async function main() {
  tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-grpc-'));
  mkdirSync(join(tmp, 'data'), { mode: 0o700 });
  mkdirSync(join(tmp, 'home'), { mode: 0o700 });
  let token;
  ({ idp, token } = await startBenchIdentity());
  const model = forkChild('grpc-model', join(BENCH, 'grpc-model.js'), [], { logFile: join(tmp, 'model.log'), env: { ...process.env, BENCH_GRPC_TOKENS: String(settings.tokens) } });
  const { address } = await waitForMessage(model, (m) => m?.type === 'ready', 20_000, 'model ready');
  const grpcPort = await freePort();
  const gateway = forkChild('gateway', join(BENCH, 'gateway.js'), [], { logFile: join(tmp, 'gateway.log') });
  gateway.child.send({
    type: 'config',
    config: {
      listen: '127.0.0.1:0',
      grpc_listen: `127.0.0.1:${grpcPort}`,
      identity: { issuer: idp.issuer, audience: AUDIENCE, cli_client_id: 'sluice-cli', groups_claim: 'groups' },
      storage: { dir: join(tmp, 'data'), master_key: randomBytes(32).toString('base64') },
      connections: [{ name: 'triton', type: 'grpc', upstream: `grpc://${address}`, allow_groups: ['ml-eng'] }],
    },
  });
  const gw = await waitForReady(gateway, 'gateway', 30_000);
  log(`model at ${address}, gateway at ${gw.url}, grpc_listen 127.0.0.1:${grpcPort}`);

  const paths = {};
  log('grpc: direct');
  paths.direct = await measurePath(address, new grpc.Metadata());
  log('grpc: listen');
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  metadata.set('x-sluice-connection', 'triton');
  paths.listen = await measurePath(`127.0.0.1:${grpcPort}`, metadata);
  log('grpc: tunnel');
  try {
    const tunnel = await startTunnel({ ...process.env, SLUICE_TOKEN: token, SLUICE_GATEWAY: gw.url, HOME: join(tmp, 'home'), XDG_CONFIG_HOME: join(tmp, 'home', '.config'), NO_COLOR: '1' });
    paths.tunnel = await measurePath(tunnel.target, new grpc.Metadata());
  } catch (err) {
    paths.tunnel = { error: String(err?.message ?? err) };
  }
  const direct = paths.direct;
  for (const name of ['listen', 'tunnel']) {
    const p = paths[name];
    if (p.error !== undefined) continue;
    p.unary_c1.added_p50_ms = difference(p.unary_c1.p50, direct.unary_c1.p50);
    p.unary_c32.ratio_to_direct = round(p.unary_c32.calls_per_s / direct.unary_c32.calls_per_s, 3);
    p.stream_ttfm.added_ttfm_p50_ms = round(p.stream_ttfm.ttfm.p50 - direct.stream_ttfm.ttfm.p50, 3);
  }
  return { settings, paths, pass: { no_errors: Object.values(paths).every((p) => p.errors === 0) } };
}

try {
  const result = await main();
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: String(err?.stack ?? err) })}\n`);
  process.exitCode = 1;
} finally {
  await stopAll();
  await idp?.close();
}
