// `node bench/capacity.js` (part `capacity` of `npm run bench`): how many realistic streamed answers the gateway
// carries. JSON result on stdout, progress on stderr.
//
// N concurrent streams (BENCH_CAPACITY_N, default 200 and 500), each a closed loop of OpenAI chat SSE answers
// of 100 token events paced 20 ms apart by the upstream (the demo model server, PII in every answer), through
// each path in turn:
//
//   bare       bench/bare-proxy.js: node:http in, an undici pool out, nothing else (the reference)
//   bare_2hops two bare proxies in a row (bench/bare-chain.js): the simplest path with the tunnel's two hops;
//              a reference too, no target applies to it
//   proxy      POST /v1/proxy/llm-stream/v1/chat/completions on the gateway (bench/gateway.js, startGateway)
//   tunnel     `sluice connect llm-stream` (a CLI process) → WebSocket → the same gateway
//   workers_2  the proxy route of `sluice serve --workers 2` (the real binary, on PostgreSQL: several
//              workers need storage.database; replicas.js's child modes start both)
//
// The gateways run the product as shipped: recording on (schema defaults: bodies recorded masked), the `pii`
// masking profile on the connection, info logging to a file. The streams come from a process of their own
// (stream-clients.js), started per measurement: ramp (the streams start spread over one answer's length),
// warm-up, then a window in which the token events the clients received and the CPU time of every bench
// process (/proc, user + system, process trees) are counted over the same interval.
//
// Per path and N: CPU µs per token event of the proxying processes (gateway, plus the CLI on the tunnel;
// the workers' tree, PostgreSQL apart), its ratio to bare, TTFB and inter-token gap percentiles, the gap p99
// added to bare's, errors, and the streams one core holds at the nominal pace (1e6 / (µs per token × 50)).
//
// Env: BENCH_CAPACITY_N ("200,500"), BENCH_CAPACITY_PATHS ("bare,bare_2hops,proxy,tunnel,workers_2"), BENCH_SECONDS
// (10) per window, BENCH_WARMUP_SECONDS (3) after the ramp, BENCH_GATEWAY_LOG_LEVEL (info),
// BENCH_CONNECT_TIMEOUT_SECONDS (30), BENCH_MAX_SECONDS (900, hard stop), BENCH_PROFILE=1 (--cpu-prof for
// the single-process gateway; top functions in `profiles`, work dir kept), BENCH_OUT=file.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { PII_DETECTORS, PII_PROFILES } from './pii-profile.js';
import { DEMO_PII } from '../dist/server/demo/model-server.js';
import { AUDIENCE, startBenchIdentity } from './identity.js';
import { difference, machineInfo, round } from './load.js';
import { REFERENCE_PATHS, startBareChain } from './bare-chain.js';
import { summarizeProfile } from './profile-top.js';
import {
  envNumber,
  forkChild,
  freePort,
  groupDelta,
  groupSnapshot,
  guardRun,
  log,
  machineBusyMicros,
  runMain,
  stopChild,
  waitForHttpOk,
  waitForMessage,
  waitForReady,
} from './procs.js';
import { startTunnel, stopTunnel } from './tunnel.js';

const BENCH = fileURLToPath(new URL('.', import.meta.url));
/** replicas.js's child modes: `--postgres` (the tests' PostgreSQL launcher) and `--serve` (`sluice serve` under a guard). */
const REPLICAS = join(BENCH, 'replicas.js');

const PATHS = [...REFERENCE_PATHS, 'proxy', 'tunnel', 'workers_2'];
/** What the capacity target names: token events per answer and the upstream's pause between two. */
const TOKENS = 100;
const TOKEN_MS = 20;
/** Token events one stream asks for per second at the upstream's pace. */
const NOMINAL_TOKENS_PER_S = 1000 / TOKEN_MS;
/**
 * A path kept pace when its streams received at least this share of the nominal rate (each answer also
 * waits for its first byte and its next request, so about 0.97 is the most a quiet run shows). Below it,
 * some process fell behind: events arrive bunched, several per write, which makes each cheaper to carry and
 * the CPU per token flattering.
 */
const KEPT_PACE_SHARE = 0.9;
const TARGETS = { cpu_ratio_to_bare_max: 1.5, added_gap_p99_ms_max: 5 };
/** Above this much CPU (percent of one core) used by processes outside the bench, a window is noisy (as in run.js). */
const NOISY_PCT = 25;
/** Pause after a measurement's streams stop, so the aborted answers are wound down before the next one. */
const SETTLE_MS = 2000;
/** A `serve` guard drains the gateway for up to its shutdown_grace before it kills it. */
const SERVE_STOP_MS = 12_000;
const STREAM_BODY = JSON.stringify({
  model: 'demo-echo',
  messages: [{ role: 'user', content: 'Look up the customer who wrote in yesterday and summarise their record.' }],
  stream: true,
});

function streamCounts(raw) {
  const counts = [...new Set(raw.split(',').map((s) => s.trim()).filter(Boolean).map(Number))];
  for (const n of counts) if (!Number.isInteger(n) || n < 1 || n > 5000) throw new Error(`BENCH_CAPACITY_N must list integers in [1, 5000], got ${raw}`);
  if (counts.length === 0) throw new Error('BENCH_CAPACITY_N names no stream count');
  return counts.sort((a, b) => a - b);
}

const settings = {
  streams: streamCounts(process.env.BENCH_CAPACITY_N ?? '200,500'),
  paths: (process.env.BENCH_CAPACITY_PATHS ?? PATHS.join(',')).split(',').map((p) => p.trim()).filter(Boolean),
  seconds: envNumber('BENCH_SECONDS', 10, { min: 1, max: 300 }),
  warmupSeconds: envNumber('BENCH_WARMUP_SECONDS', 3, { min: 0, max: 60 }),
  logLevel: process.env.BENCH_GATEWAY_LOG_LEVEL ?? 'info',
  connectTimeoutS: envNumber('BENCH_CONNECT_TIMEOUT_SECONDS', 30, { min: 1, max: 600 }),
  maxSeconds: envNumber('BENCH_MAX_SECONDS', 900, { min: 10, max: 7200 }),
  profile: process.env.BENCH_PROFILE === '1',
};
for (const p of settings.paths) if (!PATHS.includes(p)) throw new Error(`unknown path in BENCH_CAPACITY_PATHS: ${p} (known: ${PATHS.join(', ')})`);
settings.paths = PATHS.filter((p) => settings.paths.includes(p));
const maxStreams = settings.streams[settings.streams.length - 1];

let idp;
const scratch = guardRun(settings.maxSeconds);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One streamed answer through `target`, read whole: its event count, and whether the PII the upstream puts
 * in every answer came through (bare must carry it, every gateway path must have masked it).
 */
async function sanity(label, target, expectMasked) {
  const res = await fetch(target.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...target.headers },
    body: STREAM_BODY,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${label}: HTTP ${res.status} ${text.slice(0, 300)}`);
  const events = text.split('\n\n').filter((e) => e.trim() !== '');
  if (events.at(-1) !== 'data: [DONE]') throw new Error(`${label}: the answer does not end with data: [DONE]: ${text.slice(-200)}`);
  let content = '';
  for (const event of events.slice(0, -1)) {
    const data = event.split('\n').find((line) => line.startsWith('data: '));
    content += JSON.parse(data.slice(6)).choices?.[0]?.delta?.content ?? '';
  }
  const raw = Object.values(DEMO_PII).filter((value) => content.includes(value));
  if (expectMasked && raw.length > 0) throw new Error(`${label}: PII came through unmasked (${raw.join(', ')}): ${content}`);
  if (!expectMasked && raw.length !== Object.keys(DEMO_PII).length) throw new Error(`${label}: the upstream's PII is not in the answer: ${content}`);
  return { events: events.length, masked: raw.length === 0, content_chars: content.length };
}

/** Asks the clients for the figures since their previous mark. */
let markSeq = 0;
async function mark(clients) {
  markSeq += 1;
  const id = markSeq;
  const reply = waitForMessage(
    clients,
    (m) => {
      if (m?.type === 'error') throw new Error(`stream clients: ${m.message}`);
      return m?.type === 'mark' && m.id === id;
    },
    10_000,
    'stream clients mark',
  );
  clients.child.send({ type: 'mark', id });
  return (await reply).window;
}

/**
 * `streams` concurrent answers through `target`: ramp and warm-up, then one window in which the clients'
 * figures and the CPU time of every process tree in `roots` (plus the clients') are taken together.
 * `proxying` names the groups whose CPU is the path's cost.
 */
async function measure(label, target, streams, roots, proxying) {
  const clients = forkChild(`clients(${label})`, join(BENCH, 'stream-clients.js'), [], { logFile: join(scratch.dir, 'clients.log') });
  const staggerMs = TOKENS * TOKEN_MS;
  clients.child.send({
    type: 'config',
    config: { url: target.url, headers: target.headers, body: STREAM_BODY, streams, minEvents: TOKENS + 2, gapEvents: TOKENS, staggerMs, timeoutMs: 60_000 },
  });
  try {
    await waitForReady(clients, 'stream clients', 10_000);
    log(`${label}: ${streams} streams, ramp ${staggerMs / 1000}s + warm-up ${settings.warmupSeconds}s`);
    await sleep(staggerMs + settings.warmupSeconds * 1000);
    const warmup = await mark(clients);
    const groups = { ...roots, loadgen: clients.child.pid };
    const before = groupSnapshot(groups);
    const machineBefore = machineBusyMicros();
    const t0 = performance.now();
    log(`${label}: measuring ${settings.seconds}s`);
    await sleep(settings.seconds * 1000);
    const w = await mark(clients);
    const delta = groupDelta(before);
    const machineAfter = machineBusyMicros();
    const windowUs = (performance.now() - t0) * 1000;
    const tokens = w.token_events;
    const cpu = {};
    for (const [group, us] of Object.entries(delta)) {
      cpu[group] = { util_pct: round((100 * us) / windowUs, 1), us_per_token: tokens ? round(us / tokens, 1) : null };
    }
    const ours = Object.values(delta).reduce((sum, us) => sum + us, 0);
    const otherPct = machineBefore !== undefined && machineAfter !== undefined ? round(Math.max(0, (100 * (machineAfter - machineBefore - ours)) / windowUs), 1) : null;
    const proxyUs = proxying.reduce((sum, group) => sum + (delta[group] ?? 0), 0);
    const usPerToken = tokens ? proxyUs / tokens : null;
    const result = {
      streams,
      window_s: w.window_s,
      answers: w.answers,
      token_events: tokens,
      tokens_per_s: round(tokens / w.window_s, 0),
      tokens_per_stream_per_s: round(tokens / w.window_s / streams, 2),
      kept_pace: tokens / w.window_s / streams >= KEPT_PACE_SHARE * NOMINAL_TOKENS_PER_S,
      ttfb_ms: w.ttfb,
      gap_ms: w.gap,
      errors: w.errors,
      ...(w.first_error ? { first_error: w.first_error } : {}),
      warmup_errors: warmup.errors.total,
      ...(warmup.first_error && !w.first_error ? { warmup_first_error: warmup.first_error } : {}),
      status_counts: w.status_counts,
      cpu_us_per_token: round(usPerToken, 1),
      cpu_cores: round(proxyUs / windowUs, 3),
      streams_per_core_by_cpu: usPerToken ? Math.floor(1e6 / (usPerToken * NOMINAL_TOKENS_PER_S)) : null,
      cpu,
      other_processes_util_pct: otherPct,
      noisy: otherPct !== null && otherPct > NOISY_PCT,
    };
    log(
      `${label}: ${result.tokens_per_s} tokens/s, ${result.cpu_us_per_token} µs/token (${proxying.join('+')}), ttfb p50 ${w.ttfb.p50} p99 ${w.ttfb.p99} ms, ` +
        `gap p50 ${w.gap.p50} p99 ${w.gap.p99} ms, loadgen ${cpu.loadgen?.util_pct}%, upstream ${cpu.upstream?.util_pct}%, other ${otherPct}%` +
        `${w.errors.total ? `  ERRORS ${JSON.stringify(w.errors)} ${w.first_error ?? ''}` : ''}`,
    );
    return result;
  } finally {
    await stopChild(clients);
    await sleep(SETTLE_MS);
  }
}

function gatewayConfig(upstream, dir) {
  return {
    listen: '127.0.0.1:0',
    identity: { issuer: idp.issuer, audience: AUDIENCE, cli_client_id: 'sluice-cli', groups_claim: 'groups' },
    // Recording on (encrypted, fail-closed): a throwaway master key and data dir per gateway.
    storage: { dir, master_key: randomBytes(32).toString('base64') },
    // One `connect` carries every stream here, where N users would each bring their own: the per-tunnel cap
    // (256 by default) must admit them all.
    tunnel: { max_streams: Math.max(256, maxStreams) },
    shutdown_grace: '5s',
    connections: [
      {
        name: 'llm-stream',
        type: 'http',
        upstream: upstream.modelUrl,
        headers: { authorization: `Bearer ${upstream.modelKey}` },
        allow_groups: ['ml-eng'],
        masking: ['pii'],
      },
    ],
    masking_profiles: PII_PROFILES,
  };
}

/** `sluice serve --workers 2` on PostgreSQL, through replicas.js's guard; resolves with its URL once /readyz says 200. */
async function startWorkers(config, postgresUrl) {
  const port = await freePort();
  const file = join(scratch.dir, 'workers-2.yaml');
  const full = { ...config, listen: `127.0.0.1:${port}`, storage: { ...config.storage, database: `${postgresUrl}capacity` } };
  // JSON is YAML: the file is read as `sluice serve --config` reads any other.
  writeFileSync(file, JSON.stringify(full, null, 2), { mode: 0o600 });
  const entry = forkChild('serve(workers 2)', REPLICAS, ['--serve', file, '2', settings.logLevel], { logFile: join(scratch.dir, 'workers-2.log') });
  entry.child.on('message', (msg) => {
    if (msg?.type === 'spawned') entry.extraPids.add(msg.pid);
  });
  try {
    await waitForMessage(
      entry,
      (m) => {
        if (m?.type === 'error') throw new Error(`sluice serve --workers 2: ${m.message}`);
        return m?.type === 'ready';
      },
      60_000,
      '2 workers ready',
    );
    const url = `http://127.0.0.1:${port}`;
    await waitForHttpOk(`${url}/readyz`);
    return { entry, url };
  } catch (err) {
    await stopChild(entry, SERVE_STOP_MS);
    throw err;
  }
}

async function main() {
  const t0 = Date.now();
  const loadavgAtStart = round(loadavg()[0], 2);
  scratch.dir = mkdtempSync(join(tmpdir(), 'sluice-bench-capacity-'));
  if (settings.profile) scratch.keep = true;
  mkdirSync(join(scratch.dir, 'home'), { mode: 0o700 });
  log(`work dir ${scratch.dir}; streams ${settings.streams.join(', ')}; paths ${settings.paths.join(', ')}; ${settings.seconds}s windows`);

  let token;
  ({ idp, token } = await startBenchIdentity());
  const upstream = forkChild('upstream', join(BENCH, 'upstream.js'), [], {
    logFile: join(scratch.dir, 'upstream.log'),
    env: { ...process.env, BENCH_CHUNKS: String(TOKENS), BENCH_CHUNK_DELAY_MS: String(TOKEN_MS) },
  });
  const up = await waitForMessage(upstream, (m) => m?.type === 'ready', 20_000, 'upstream ready');
  log(`upstream (demo model, ${TOKENS} tokens ${TOKEN_MS} ms apart) at ${up.modelUrl}`);

  const results = Object.fromEntries(settings.streams.map((n) => [`n${n}`, {}]));
  const answers = {};
  const baseRoots = { bench: process.pid, upstream: upstream.child.pid };
  const chatPath = '/v1/chat/completions';
  const proxyTarget = (url) => ({ url: `${url}/v1/proxy/llm-stream${chatPath}`, headers: { authorization: `Bearer ${token}` } });

  /** Measures `path` at every N; a failure is that path's `{ error }`, the run goes on. */
  async function measureAll(path, target, roots, proxying) {
    for (const n of settings.streams) {
      try {
        results[`n${n}`][path] = await measure(`${path} n${n}`, target, n, roots, proxying);
      } catch (err) {
        log(`${path} n${n} failed: ${err.stack ?? err}`);
        scratch.keep = true;
        results[`n${n}`][path] = { error: String(err.message ?? err) };
      }
    }
  }
  const failAll = (path, err) => {
    log(`${path}: ${err.stack ?? err}`);
    scratch.keep = true;
    for (const n of settings.streams) results[`n${n}`][path] = { error: String(err.message ?? err) };
  };

  // Phase 1: bare, proxy and tunnel, beside one another (the gateway serves both of its paths).
  let profiles;
  const single = settings.paths.filter((p) => p !== 'workers_2');
  if (single.length > 0) {
    const roots = { ...baseRoots };
    let bareChain = [];
    let gateway;
    let tunnel;
    try {
      bareChain = await startBareChain({ paths: single, upstreams: { stream: up.modelUrl }, connections: maxStreams, logDir: scratch.dir });
      if (bareChain[0]) roots.bare = bareChain[0].entry.child.pid;
      if (bareChain[1]) roots.bare2 = bareChain[1].entry.child.pid;
      if (single.includes('proxy') || single.includes('tunnel')) {
        const dir = join(scratch.dir, 'data');
        mkdirSync(dir, { mode: 0o700 });
        gateway = forkChild('gateway', join(BENCH, 'gateway.js'), [], {
          logFile: join(scratch.dir, 'gateway.log'),
          execArgv: settings.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(scratch.dir, 'profiles', 'gateway')}`] : [],
          env: { ...process.env, BENCH_GATEWAY_LOG_LEVEL: settings.logLevel },
        });
        gateway.child.send({ type: 'config', config: gatewayConfig(up, dir) });
        gateway.url = (await waitForReady(gateway, 'gateway', 30_000)).url;
        await waitForHttpOk(`${gateway.url}/readyz`);
        roots.gateway = gateway.child.pid;
        log(`gateway at ${gateway.url}`);
      }
      for (const [path, hop, proxying] of [['bare', bareChain[0], ['bare']], ['bare_2hops', bareChain[1], ['bare', 'bare2']]]) {
        if (!single.includes(path)) continue;
        const target = { url: `${hop.url}/stream${chatPath}`, headers: { authorization: `Bearer ${up.modelKey}` } };
        try {
          answers[path] = await sanity(path, target, false);
          await measureAll(path, target, roots, proxying);
        } catch (err) {
          failAll(path, err);
        }
      }
      if (single.includes('proxy')) {
        const target = proxyTarget(gateway.url);
        try {
          answers.proxy = await sanity('proxy', target, true);
          await measureAll('proxy', target, roots, ['gateway']);
        } catch (err) {
          failAll('proxy', err);
        }
      }
      if (single.includes('tunnel')) {
        try {
          tunnel = await startTunnel({
            connection: 'llm-stream',
            env: {
              ...process.env,
              SLUICE_TOKEN: token,
              SLUICE_GATEWAY: gateway.url,
              HOME: join(scratch.dir, 'home'),
              XDG_CONFIG_HOME: join(scratch.dir, 'home', '.config'),
              NO_COLOR: '1',
            },
            workDir: scratch.dir,
            timeoutMs: settings.connectTimeoutS * 1000,
          });
          const target = { url: `${tunnel.url}${chatPath}`, headers: { authorization: tunnel.auth } };
          answers.tunnel = await sanity('tunnel', target, true);
          // The guard's tree holds the CLI: its CPU is the tunnel's client side.
          await measureAll('tunnel', target, { ...roots, cli: tunnel.entry.child.pid }, ['gateway', 'cli']);
          for (const n of settings.streams) if (tunnel.exit && !results[`n${n}`].tunnel.error) results[`n${n}`].tunnel.error = tunnel.exit;
        } catch (err) {
          failAll('tunnel', err);
        }
      }
    } finally {
      if (tunnel) await stopTunnel(tunnel);
      if (gateway) await stopChild(gateway); // writes its profile on exit
      for (const hop of bareChain.reverse()) await stopChild(hop.entry);
    }
    if (settings.profile && gateway) {
      const dir = join(scratch.dir, 'profiles', 'gateway');
      const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
      profiles = { gateway: files.map((f) => summarizeProfile(join(dir, f), 20)) };
      log(`profiles kept in ${dir}`);
    }
  }

  // Phase 2: two workers on PostgreSQL, alone with the upstream.
  if (settings.paths.includes('workers_2')) {
    const workersDir = join(scratch.dir, 'data-workers');
    mkdirSync(workersDir, { mode: 0o700 });
    let postgres;
    let serve;
    try {
      postgres = forkChild('postgres', REPLICAS, ['--postgres'], {
        logFile: join(scratch.dir, 'postgres.log'),
        execArgv: ['--import', import.meta.resolve('tsx')],
      });
      postgres.child.send({ type: 'config', config: { databases: ['capacity'] } });
      const pg = await waitForReady(postgres, 'PostgreSQL', 60_000);
      serve = await startWorkers(gatewayConfig(up, workersDir), pg.url);
      log(`sluice serve --workers 2 at ${serve.url}`);
      const target = proxyTarget(serve.url);
      answers.workers_2 = await sanity('workers_2', target, true);
      await measureAll('workers_2', target, { ...baseRoots, postgres: postgres.child.pid, serve: serve.entry.child.pid }, ['serve']);
    } catch (err) {
      failAll('workers_2', err);
    } finally {
      if (serve) await stopChild(serve.entry, SERVE_STOP_MS);
      if (postgres) await stopChild(postgres);
    }
  }

  // Derived figures: against bare at the same N.
  const ok = (r) => r !== undefined && r.error === undefined;
  for (const n of settings.streams) {
    const row = results[`n${n}`];
    for (const path of settings.paths.filter((p) => p !== 'bare')) {
      const r = row[path];
      // A window in which no token arrived has no figures to compare (nulls), so no ratio and no gap: `pass` is then null.
      if (!ok(r) || !ok(row.bare) || !r.cpu_us_per_token || !row.bare.cpu_us_per_token) continue;
      r.ratio_to_bare = round(r.cpu_us_per_token / row.bare.cpu_us_per_token, 2);
      r.added_gap_p99_ms = difference(r.gap_ms.p99, row.bare.gap_ms.p99, 1);
      r.added_ttfb_p50_ms = difference(r.ttfb_ms.p50, row.bare.ttfb_ms.p50, 1);
    }
  }

  // Streams one core holds, two ways (bench/README.md says why both).
  const summary = {};
  for (const path of settings.paths) {
    const rows = settings.streams.map((n) => [n, results[`n${n}`][path]]).filter(([, r]) => ok(r));
    // The capacity figure comes from the largest N that kept pace (the most load at an honest cost per token).
    const top = rows.filter(([, r]) => r.kept_pace).at(-1) ?? rows[0];
    const withinGap = rows.filter(([, r]) => r.errors.total === 0 && (r.added_gap_p99_ms ?? Infinity) <= TARGETS.added_gap_p99_ms_max);
    summary[path] = {
      cpu_us_per_token: Object.fromEntries(rows.map(([n, r]) => [`n${n}`, r.cpu_us_per_token])),
      ...(path === 'bare' ? {} : { ratio_to_bare: Object.fromEntries(rows.map(([n, r]) => [`n${n}`, r.ratio_to_bare ?? null])) }),
      ...(path === 'bare' ? {} : { added_gap_p99_ms: Object.fromEntries(rows.map(([n, r]) => [`n${n}`, r.added_gap_p99_ms ?? null])) }),
      streams_per_core_by_cpu: top ? top[1].streams_per_core_by_cpu : null,
      streams_per_core_by_cpu_at_n: top ? top[0] : null,
      streams_per_core_by_cpu_kept_pace: top ? top[1].kept_pace : null,
      ...(path === 'bare' ? {} : { largest_n_within_gap_target: withinGap.length > 0 ? withinGap.at(-1)[0] : null }),
    };
  }

  const pass = {};
  let totalErrors = 0;
  for (const row of Object.values(results)) for (const r of Object.values(row)) totalErrors += (r.errors?.total ?? 0) + (r.warmup_errors ?? 0);
  for (const path of settings.paths.filter((p) => !REFERENCE_PATHS.includes(p))) {
    const rows = settings.streams.map((n) => results[`n${n}`][path]);
    // null: the path (or bare) has no figure here; its `error` says why.
    pass[`${path}_cpu_ratio`] = rows.every((r) => ok(r) && r.ratio_to_bare !== undefined) ? rows.every((r) => r.ratio_to_bare <= TARGETS.cpu_ratio_to_bare_max) : null;
    const last = rows.at(-1);
    pass[`${path}_added_gap_p99`] = ok(last) && last.added_gap_p99_ms != null ? last.added_gap_p99_ms <= TARGETS.added_gap_p99_ms_max : null;
  }
  pass.no_errors = totalErrors === 0;
  pass.all = Object.values(pass).every((v) => v === true);

  const output = {
    machine: machineInfo(loadavgAtStart),
    config: {
      streams: settings.streams,
      paths: settings.paths,
      seconds: settings.seconds,
      warmup_seconds: settings.warmupSeconds,
      ramp_seconds: (TOKENS * TOKEN_MS) / 1000,
      answer: { token_events: TOKENS, token_interval_ms: TOKEN_MS, upstream: 'demo model server (startModelServer), PII in every answer', sanity: answers },
      gateway: {
        launcher: 'proxy and tunnel: bench/gateway.js (startGateway, one process, SQLite); workers_2: node bin/sluice.js serve --workers 2 (PostgreSQL)',
        log_level: settings.logLevel,
        logs_to: 'file',
        masking: `profile pii: ${PII_DETECTORS.join(', ')}, style redact`,
        recording: 'on, schema defaults (request/response bodies recorded masked)',
        tunnel_max_streams: Math.max(256, maxStreams),
      },
      processes: {
        loadgen: 'child per measurement (bench/stream-clients.js: node:http keep-alive, one socket per stream)',
        upstream: 'child (bench/upstream.js)',
        bare: 'child (bench/bare-proxy.js, pool sized to the largest N)',
        bare2: 'bare_2hops only: a second bare proxy in front of the first (bench/bare-chain.js)',
        gateway: 'child (bench/gateway.js)',
        cli: 'tunnel only: bench/cli-guard.js and its sluice connect',
        serve: 'workers_2 only: replicas.js --serve guard, serve primary and 2 workers',
        postgres: 'workers_2 only: replicas.js --postgres (server and backends)',
      },
      noisy_threshold_pct_of_core: NOISY_PCT,
    },
    results,
    summary,
    targets: TARGETS,
    pass,
    ...(profiles ? { profiles } : {}),
    elapsed_s: round((Date.now() - t0) / 1000, 1),
  };
  const text = `${JSON.stringify(output, null, 2)}\n`;
  if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, text);
  process.stdout.write(text);
  return 0;
}

await runMain(main, scratch, () => idp?.close());
