// `npm run soak -- --minutes N` (default 10): a gateway under mixed traffic for N minutes, watched for
// leaks. One JSON object on stdout, progress on stderr; exit 1 when a bound is missed.
//
// Processes, as in the bench (bench/README.md): this one runs the IdP, a TCP echo server, the traffic
// and the reviewer robot; the upstreams (bench/upstream.js), the gateway (bench/gateway.js) and two
// `sluice connect` tunnels (bench/cli-guard.js: `llm`, HTTP, and `echo`, TCP) run in children.
//
// Traffic, each kind a closed loop of one call at a time, checked for what a caller must get:
//   tunnel_plain   non-streamed chat through the tunnel (`llm`): the upstream's exact body
//   tunnel_stream  streamed chat through the tunnel (`llm-stream`, masked): ends with [DONE], no raw email
//   proxy_plain    non-streamed chat on /v1/proxy/llm: the exact body
//   proxy_masked   non-streamed chat on /v1/proxy/llm-stream: the demo's email masked
//   denied         model "forbidden": 403 ERR_POLICY_DENIED
//   held           model "frontier": held for review, approved by the reviewer robot through the API, 200
//   tcp_echo       random bytes through the TCP tunnel, half-close, the same bytes back
//
// After the warm-up (60 s; --warmup-seconds) the gateway is sampled every 5 s: RSS,
// heap used and event-loop delay p99 from its Prometheus listener (`metrics_listen`, prom-client's
// process metrics; the lag histogram restarts at every scrape, so each p99 covers one interval), open
// file descriptors from /proc/<pid>/fd. Bounds: RSS and heap growth < 32 MiB (the floor of the last third
// of the samples minus the floor of the first: the heap swings by tens of MiB between collections, so
// single samples say when the last GC ran, not whether memory leaks), no unexpected error, fds flat
// (last - first <= 8).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startEchoServer } from '../dist/server/demo/echo-server.js';
import { AUDIENCE, startBenchIdentity } from './identity.js';
import { round } from './load.js';
import { forkChild, freePort, killAllHard, log, stopAll, waitForMessage, waitForReady } from './procs.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = fileURLToPath(new URL('.', import.meta.url));
const CLI = join(ROOT, 'bin', 'sluice.js');

const { values: args } = parseArgs({
  options: { minutes: { type: 'string', default: '10' }, 'warmup-seconds': { type: 'string' }, 'sample-seconds': { type: 'string', default: '5' } },
});
const minutes = Number(args.minutes);
if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 24 * 60) throw new Error(`--minutes must be a number of minutes in (0, 1440], got ${args.minutes}`);
const settings = {
  minutes,
  warmupSeconds: args['warmup-seconds'] !== undefined ? Number(args['warmup-seconds']) : 60,
  sampleSeconds: Number(args['sample-seconds']),
  /** Pause between two calls of one loop: the machine is shared, the soak is about time, not load. */
  pauseMs: 10,
  callTimeoutMs: 30_000,
};
const BOUNDS = { growth_mib_max: 32, fds_growth_max: 8 };
const REVIEWER = 'soak-reviewer';
const EMAIL = 'jane.doe@example.com';

let tmp;
let idp;
let echo;
process.on('exit', () => {
  killAllHard();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    log(`${signal}: stopping child processes`);
    void stopAll().finally(() => process.exit(130));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (bytes) => round(bytes / (1024 * 1024), 2);

/** `sluice connect NAME --port N --json` through cli-guard; resolves once it prints its ready line. */
async function startTunnel(name, env) {
  const port = await freePort();
  const entry = forkChild(`cli(${name})`, join(BENCH, 'cli-guard.js'), [CLI, name, String(port)], { logFile: join(tmp, `cli-${name}.log`), env });
  entry.child.on('message', (msg) => {
    if (msg?.type === 'spawned') entry.extraPids.add(msg.pid);
    if (msg?.type === 'line' && /"event":"(disconnected|error)"/.test(msg.line)) log(`sluice connect ${name}: ${msg.line}`);
  });
  const ready = await waitForMessage(
    entry,
    (msg) => {
      if (msg?.type === 'exit') throw new Error(`sluice connect ${name} exited (code ${msg.code}) before it was ready`);
      return msg?.type === 'line' && msg.line.includes('"ready"');
    },
    30_000,
    `sluice connect ${name} ready`,
  );
  const { local_token: localToken } = JSON.parse(ready.line);
  return { port, url: `http://127.0.0.1:${port}`, auth: localToken ? `Bearer ${localToken}` : undefined };
}

/** Gauges of the gateway: prom-client's process metrics plus the fd count from /proc. */
async function sample(metricsUrl, pid) {
  const text = await (await fetch(`${metricsUrl}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const gauge = (name) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  return {
    rss: gauge('process_resident_memory_bytes'),
    heap: gauge('nodejs_heap_size_used_bytes'),
    lagP99Ms: gauge('nodejs_eventloop_lag_p99_seconds') === null ? null : gauge('nodejs_eventloop_lag_p99_seconds') * 1000,
    fds: readdirSync(`/proc/${pid}/fd`).length,
  };
}

const counts = {};
const errors = {};
const errorSamples = [];
function fail(kind, message) {
  errors[kind] = (errors[kind] ?? 0) + 1;
  if (errorSamples.length < 20) errorSamples.push({ kind, at_s: round((Date.now() - startedAt) / 1000, 1), message: String(message).slice(0, 300) });
}
let startedAt = Date.now();

/** Runs `call` in a loop until `until`; each call resolves when the caller got what it must, or throws. */
async function loop(kind, until, call) {
  counts[kind] = 0;
  while (Date.now() < until) {
    try {
      await call();
      counts[kind] += 1;
    } catch (err) {
      fail(kind, err?.message ?? err);
      await sleep(500);
    }
    await sleep(settings.pauseMs);
  }
}

const chat = (model, content, stream = false) => JSON.stringify({ model, messages: [{ role: 'user', content }], stream });

async function post(url, auth, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
    body,
    signal: AbortSignal.timeout(settings.callTimeoutMs),
  });
  return { status: res.status, text: await res.text() };
}

function expectAnswer(label, r, check) {
  if (!check(r)) throw new Error(`${label}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
}

function tcpEcho(port) {
  return new Promise((resolve, reject) => {
    const sent = randomBytes(4096);
    const parts = [];
    const socket = tcpConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
    socket.setTimeout(settings.callTimeoutMs, () => socket.destroy(new Error('tcp echo: no answer in time')));
    socket.on('connect', () => socket.end(sent));
    socket.on('data', (c) => parts.push(c));
    socket.on('error', reject);
    socket.on('end', () => {
      socket.destroy();
      const got = Buffer.concat(parts);
      if (got.equals(sent)) resolve();
      else reject(new Error(`tcp echo: ${got.length} bytes back of ${sent.length}, ${got.length === sent.length ? 'different' : 'short'}`));
    });
  });
}

/** Approves every pending review through the API, as a reviewer would, until `until`. */
async function reviewer(gatewayUrl, token, until) {
  counts.approvals = 0;
  while (Date.now() < until + 5000) {
    try {
      const res = await fetch(`${gatewayUrl}/v1/reviews?status=pending`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
      const { reviews } = await res.json();
      for (const review of reviews ?? []) {
        const ok = await fetch(`${gatewayUrl}/v1/reviews/${review.id}/approve`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ reason: 'soak' }),
          signal: AbortSignal.timeout(10_000),
        });
        if (ok.status === 200) counts.approvals += 1;
        else fail('approve', `HTTP ${ok.status} ${(await ok.text()).slice(0, 200)}`);
      }
    } catch (err) {
      fail('approve', err?.message ?? err);
    }
    await sleep(200);
  }
}


/**
 * The heap is a sawtooth (tens of MiB between collections) and so, less, is RSS: growth is the floor of
 * the last third of the samples minus the floor of the first third, what stays after the collections.
 */
function floorGrowth(samples, key) {
  if (samples.length < 3) return null;
  const third = Math.max(1, Math.floor(samples.length / 3));
  const floor = (part) => Math.min(...part.map((s) => s[key]));
  return mib(floor(samples.slice(-third)) - floor(samples.slice(0, third)));
}

async function main() {
  tmp = mkdtempSync(join(tmpdir(), 'sluice-soak-'));
  let token;
  let tokens;
  ({ idp, token, tokens } = await startBenchIdentity({ extraClients: [{ clientId: REVIEWER, groups: ['ml-leads'] }] }));
  echo = await startEchoServer();
  const upstream = forkChild('upstream', join(BENCH, 'upstream.js'), [], { logFile: join(tmp, 'upstream.log'), env: { ...process.env, BENCH_CHUNKS: '20', BENCH_CHUNK_DELAY_MS: '2' } });
  const up = await waitForMessage(upstream, (m) => m?.type === 'ready', 20_000, 'upstream ready');

  const metricsPort = await freePort();
  const config = {
    listen: '127.0.0.1:0',
    metrics_listen: `127.0.0.1:${metricsPort}`,
    identity: { issuer: idp.issuer, audience: AUDIENCE, cli_client_id: 'sluice-cli', groups_claim: 'groups' },
    roles: { reviewer: ['ml-leads'] },
    storage: { dir: join(tmp, 'data'), master_key: randomBytes(32).toString('base64') },
    connections: [
      { name: 'llm', type: 'http', upstream: up.fastUrl, headers: { authorization: `Bearer ${up.fastKey}` }, allow_groups: ['ml-eng'] },
      { name: 'llm-stream', type: 'http', upstream: up.modelUrl, headers: { authorization: `Bearer ${up.modelKey}` }, allow_groups: ['ml-eng'], masking: ['pii'] },
      { name: 'echo', type: 'tcp', upstream: `tcp://${echo.address}`, allow_groups: ['ml-eng'] },
    ],
    masking_profiles: { pii: { detectors: ['email', 'phone', 'credit_card', 'ip_address'] } },
    policies: [
      { name: 'no-forbidden-model', when: 'request.json.?model.orValue("") == "forbidden"', action: 'deny', message: 'The model "forbidden" is not allowed' },
      { name: 'frontier-review', when: 'request.json.?model.orValue("") == "frontier"', action: 'review', reviewers: ['ml-leads'], timeout: '2m' },
    ],
  };
  const gateway = forkChild('gateway', join(BENCH, 'gateway.js'), [], { logFile: join(tmp, 'gateway.log'), env: { ...process.env, BENCH_GATEWAY_LOG_LEVEL: 'warn' } });
  gateway.child.send({ type: 'config', config });
  const gw = await waitForReady(gateway, 'gateway', 30_000);
  const metricsUrl = `http://127.0.0.1:${metricsPort}`;
  const gatewayPid = gateway.child.pid;
  log(`gateway at ${gw.url}, metrics at ${metricsUrl}, pid ${gatewayPid}`);

  const cliEnv = { ...process.env, SLUICE_TOKEN: token, SLUICE_GATEWAY: gw.url, HOME: join(tmp, 'home'), XDG_CONFIG_HOME: join(tmp, 'home', '.config'), NO_COLOR: '1' };
  const llm = await startTunnel('llm', cliEnv);
  const llmStream = await startTunnel('llm-stream', cliEnv);
  const tcp = await startTunnel('echo', cliEnv);
  log(`tunnels: llm ${llm.url}, llm-stream ${llmStream.url}, echo 127.0.0.1:${tcp.port}`);

  startedAt = Date.now();
  const until = startedAt + settings.minutes * 60_000;
  const bearer = `Bearer ${token}`;
  const proxy = (conn) => `${gw.url}/v1/proxy/${conn}/v1/chat/completions`;
  const exact = (r) => r.status === 200 && r.text === up.answer;
  const maskedStream = (r) => r.status === 200 && r.text.trimEnd().endsWith('data: [DONE]') && !r.text.includes(EMAIL);
  const masked = (r) => r.status === 200 && !r.text.includes(EMAIL) && r.text.includes('[EMAIL]');
  let held = 0;

  const samples = [];
  const sampler = (async () => {
    await sleep(settings.warmupSeconds * 1000);
    log(`warm-up done (${settings.warmupSeconds} s); sampling every ${settings.sampleSeconds} s`);
    while (Date.now() < until) {
      try {
        samples.push({ at_s: round((Date.now() - startedAt) / 1000, 1), ...(await sample(metricsUrl, gatewayPid)) });
      } catch (err) {
        fail('sample', err?.message ?? err);
      }
      await sleep(settings.sampleSeconds * 1000);
    }
  })();
  const progress = setInterval(() => log(`${round((Date.now() - startedAt) / 60_000, 1)} min: ${JSON.stringify(counts)} errors ${JSON.stringify(errors)}`), 30_000);

  await Promise.all([
    loop('tunnel_plain', until, async () => expectAnswer('tunnel_plain', await post(`${llm.url}/v1/chat/completions`, llm.auth, chat('bench', 'Say hello.')), exact)),
    loop('tunnel_stream', until, async () =>
      expectAnswer('tunnel_stream', await post(`${llmStream.url}/v1/chat/completions`, llmStream.auth, chat('demo-echo', 'Stream please.', true)), maskedStream),
    ),
    loop('proxy_plain', until, async () => expectAnswer('proxy_plain', await post(proxy('llm'), bearer, chat('bench', 'Say hello.')), exact)),
    loop('proxy_masked', until, async () => expectAnswer('proxy_masked', await post(proxy('llm-stream'), bearer, chat('demo-echo', 'Who is the customer?')), masked)),
    loop('denied', until, async () =>
      expectAnswer('denied', await post(proxy('llm'), bearer, chat('forbidden', 'No.')), (r) => r.status === 403 && r.text.includes('ERR_POLICY_DENIED')),
    ),
    // A distinct body each time: every held call is a review of its own.
    loop('held', until, async () => expectAnswer('held', await post(proxy('llm'), bearer, chat('frontier', `Held call ${(held += 1)}`)), exact)),
    loop('tcp_echo', until, () => tcpEcho(tcp.port)),
    reviewer(gw.url, tokens[REVIEWER], until),
    sampler,
  ]);
  clearInterval(progress);

  const fds = samples.map((s) => s.fds);
  const lags = samples.map((s) => s.lagP99Ms).filter((v) => v !== null);
  const unexpected = Object.values(errors).reduce((a, b) => a + b, 0);
  const result = {
    minutes: settings.minutes,
    warmup_seconds: settings.warmupSeconds,
    samples: samples.length,
    rss_mib: { first: samples.length ? mib(samples[0].rss) : null, last: samples.length ? mib(samples.at(-1).rss) : null, growth: floorGrowth(samples, 'rss') },
    heap_mib: { first: samples.length ? mib(samples[0].heap) : null, last: samples.length ? mib(samples.at(-1).heap) : null, growth: floorGrowth(samples, 'heap') },
    fds: { first: fds[0] ?? null, last: fds.at(-1) ?? null, max: fds.length ? Math.max(...fds) : null },
    event_loop_p99_ms: { max: lags.length ? round(Math.max(...lags), 2) : null, median: lags.length ? round(lags.sort((a, b) => a - b)[Math.floor(lags.length / 2)], 2) : null },
    requests: counts,
    errors: { unexpected, by_kind: errors, first: errorSamples },
    bounds: BOUNDS,
    series: samples.map((s) => ({ at_s: s.at_s, rss_mib: mib(s.rss), heap_mib: mib(s.heap), fds: s.fds, lag_p99_ms: round(s.lagP99Ms, 1) })),
  };
  const pass = {
    rss: result.rss_mib.growth !== null && result.rss_mib.growth < BOUNDS.growth_mib_max,
    heap: result.heap_mib.growth !== null && result.heap_mib.growth < BOUNDS.growth_mib_max,
    no_errors: unexpected === 0,
    fds_flat: fds.length >= 2 && fds.at(-1) - fds[0] <= BOUNDS.fds_growth_max,
  };
  result.pass = Object.values(pass).every(Boolean);
  result.checks = pass;
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);

  await stopAll();
  await echo.close();
  await idp.close();
  process.exit(result.pass ? 0 : 1);
}

main().catch(async (err) => {
  log(`soak failed: ${err?.stack ?? err}`);
  await stopAll();
  await echo?.close().catch(() => undefined);
  await idp?.close().catch(() => undefined);
  process.exit(2);
});
