// `node bench/observability.js`: what metrics and an audit sink cost the gateway, in one run. JSON result on
// stdout, progress on stderr.
//
// Two gateways (bench/gateway.js, startGateway as `sluice serve` runs it), each in its own process, on the
// same fixed-answer upstream (upstream.js), each loaded at 32 connections through
// POST /v1/proxy/llm/v1/chat/completions (bearer JWT from identity.js):
//
//   plain     recording on (schema defaults), no metrics_listen, no audit.sinks
//   observed  the same plus metrics_listen (scraped once a second during the load, as Prometheus would) and
//             one audit sink, `{type: file}` (one JSON line per event, synced per batch)
//
// The figure is the gateway process's CPU time (user + system, /proc) per exchange, not latency or rps:
// on 2 shared cores those move with whatever else runs. Target: at most 5 % added.
//
// Both gateways are loaded at the same time, each offered the same rate (BENCH_RATE requests per second over
// its 32 connections), below what either can take. This machine's speed drifts by ±20 % over tens of seconds
// (the host's other guests), and a gateway's CPU per exchange with it, so two gateways measured one after the
// other differ by more than the effect measured; measured at once, what slows the whole machine falls on both
// alike. At the same rate both do the same work per second: loaded as hard as it goes instead, a gateway's
// CPU per exchange falls as its throughput rises (more exchanges share each event-loop turn, each log write,
// each outbox flush), so a faster run would look cheaper. The rate is spread evenly (load.js `pacedLoad`):
// autocannon's per-second cap sends each second's requests at its start, and two gateways hit by a burst at
// the same moment each second moved by ±20 % from round to round. Each round starts both gateways afresh: a
// process keeps a bias of its own for its life (how V8 happened to compile it, where its heap fell), and two
// gateways of one configuration side by side differed by −2 to +4 % for a whole run; new processes every
// round make that one more thing the rounds' median evens out (BENCH_OBSERVE=none measures exactly that:
// both gateways plain). `rate_held` says whether each run got the rate it was offered; BENCH_RATE=0 loads
// both as hard as they go (autocannon, closed loop). BENCH_MODE=turns loads them a second each in turn
// instead, the machine never running both at once: each gateway is then idle half the window, and what its
// timers and senders do while it idles counts towards its exchanges.
//
// Env: BENCH_SECONDS (5) per round, BENCH_WARMUP_SECONDS (2, in every round), BENCH_GATEWAY_LOG_LEVEL (info),
// BENCH_MAX_SECONDS (300, hard stop), BENCH_RATE (1000 requests/s to each gateway; 0 = closed loop),
// BENCH_OUT=file, BENCH_OBSERVE=both|metrics|sink|none (both: what the observed gateway turns on; metrics or
// sink turns on only that half, to tell the two costs apart; none: the observed gateway is plain too),
// BENCH_ROUNDS (11; each round's ratio is reported, and their median), BENCH_MODE=together|turns (together),
// BENCH_PROFILE=1 (CPU profiles of both gateways, summarised in `profiles` and kept in the work dir).
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AUDIENCE, startBenchIdentity } from './identity.js';
import { httpLoad, keepAgent, pacedLoad, round } from './load.js';
import { summarizeProfile } from './profile-top.js';
import { cpuDelta, cpuSnapshot, envNumber, forkChild, freePort, guardRun, log, machineBusyMicros, mainThreadCpuMicros, runMain, stopChild, waitForMessage, waitForReady } from './procs.js';

const BENCH = fileURLToPath(new URL('.', import.meta.url));
const CONNECTIONS = 32;
const ADDED_PCT_MAX = 5;
/** Above this much CPU (percent of one core) used by other processes, a run is called noisy, as in run.js. */
const NOISY_PCT = 25;
const OBSERVE = ['both', 'metrics', 'sink', 'none'];

const settings = {
  seconds: envNumber('BENCH_SECONDS', 5, { min: 1, max: 120 }),
  warmupSeconds: envNumber('BENCH_WARMUP_SECONDS', 2, { min: 0, max: 30 }),
  maxSeconds: envNumber('BENCH_MAX_SECONDS', 300, { min: 10, max: 3600 }),
  logLevel: process.env.BENCH_GATEWAY_LOG_LEVEL ?? 'info',
  observe: process.env.BENCH_OBSERVE ?? 'both',
  profile: process.env.BENCH_PROFILE === '1',
  rounds: envNumber('BENCH_ROUNDS', 11, { min: 1, max: 30 }),
  rate: envNumber('BENCH_RATE', 1000, { min: 0, max: 100_000 }),
  mode: process.env.BENCH_MODE ?? 'together',
};
/** How long the window goes on after the last second of load in turns: longer than the audit flush and the sender's linger. */
const SETTLE_MS = 500;
/** A run that answered less than this share of the offered rate was not loaded as the other one was. */
const RATE_HELD_SHARE = 0.95;
if (!['turns', 'together'].includes(settings.mode)) throw new Error('BENCH_MODE must be turns or together');
if (settings.mode === 'turns' && settings.rate === 0) throw new Error('BENCH_MODE=turns needs a rate (BENCH_RATE > 0)');
if (!OBSERVE.includes(settings.observe)) throw new Error(`BENCH_OBSERVE must be one of ${OBSERVE.join(', ')}`);
const withMetrics = settings.observe === 'both' || settings.observe === 'metrics';
const withSink = settings.observe === 'both' || settings.observe === 'sink';
const CHAT_BODY = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'Say hello.' }], stream: false });

let idp;
const scratch = guardRun(settings.maxSeconds);

async function scrape(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res.text();
}

/** Sum of every sample of a metric whose labels contain `match` (say `via="proxy"`). */
function metricSum(text, name, match = '') {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!line.includes(match)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Loads of one gateway merged: counts summed, `p50`/`p99` the median of the loads' own. */
function mergeLoads(loads) {
  const sum = (pick) => loads.reduce((n, l) => n + pick(l), 0);
  const median = (pick) => loads.map(pick).sort((a, b) => a - b)[Math.floor((loads.length - 1) / 2)];
  const durationS = sum((l) => l.duration_s);
  const errors = {};
  for (const key of Object.keys(loads[0].errors)) errors[key] = sum((l) => l.errors[key]);
  return {
    requests: sum((l) => l.requests),
    duration_s: round(durationS, 2),
    rps: round(sum((l) => l.requests) / durationS, 1),
    p50: median((l) => l.p50),
    p99: median((l) => l.p99),
    late: sum((l) => l.late ?? 0),
    errors,
  };
}

/** Exchanges a load answered, well or not: each is one the gateway saw through, so one `exchange` event. */
const answered = (result) => result.requests + result.errors.non2xx + result.errors.mismatches;

/**
 * Counts the `exchange` events in the audit file as it grows, reading only what was appended since the last
 * look. `waitFor(n)` resolves to how many arrived since the previous wait once `n` have (or `timeoutMs` passed).
 */
function auditTally(path) {
  let offset = 0;
  let partial = '';
  let total = 0;
  let counted = 0;
  const read = () => {
    let fd;
    try {
      fd = openSync(path, 'r');
    } catch {
      return;
    }
    try {
      const size = fstatSync(fd).size;
      if (size <= offset) return;
      const buffer = Buffer.alloc(size - offset);
      readSync(fd, buffer, 0, buffer.length, offset);
      offset = size;
      const lines = (partial + buffer.toString('utf8')).split('\n');
      partial = lines.pop();
      for (const line of lines) if (line.includes('"kind":"exchange"')) total += 1;
    } finally {
      closeSync(fd);
    }
  };
  return {
    async waitFor(n, timeoutMs) {
      const until = Date.now() + timeoutMs;
      read();
      while (total - counted < n && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 100));
        read();
      }
      const arrived = total - counted;
      counted = total;
      return arrived;
    },
  };
}

async function main() {
  const t0 = Date.now();
  scratch.dir = mkdtempSync(join(tmpdir(), 'sluice-bench-obs-'));
  log(`work dir ${scratch.dir}; ${settings.seconds}s per round after ${settings.warmupSeconds}s warm-up at ${settings.rate || 'unbounded'} requests/s each; observed: ${settings.observe}`);
  // A profile is only worth having if it outlives the run.
  if (settings.profile) scratch.keep = true;
  let bearer;
  ({ idp, token: bearer } = await startBenchIdentity());
  const upstream = forkChild('upstream', join(BENCH, 'upstream.js'), [], { logFile: join(scratch.dir, 'upstream.log') });
  const up = await waitForMessage(upstream, (m) => m?.type === 'ready', 20_000, 'upstream ready');

  const auditPath = join(scratch.dir, 'audit', 'audit.jsonl');
  mkdirSync(join(scratch.dir, 'audit'), { mode: 0o700 });
  const baseConfig = (dir) => ({
    listen: '127.0.0.1:0',
    identity: { issuer: idp.issuer, audience: AUDIENCE, cli_client_id: 'sluice-cli', groups_claim: 'groups' },
    storage: { dir, master_key: randomBytes(32).toString('base64') },
    connections: [{ name: 'llm', type: 'http', upstream: up.fastUrl, headers: { authorization: `Bearer ${up.fastKey}` }, allow_groups: ['ml-eng'] }],
  });

  /** Both gateways of one round, in new processes with new data directories; the observed one's sink appends to the one audit file. */
  const startGateways = async (index) => {
    const metricsUrl = `http://127.0.0.1:${await freePort()}/metrics`;
    const configs = {
      plain: baseConfig(join(scratch.dir, `data-plain-${index}`)),
      observed: {
        ...baseConfig(join(scratch.dir, `data-observed-${index}`)),
        ...(withMetrics ? { metrics_listen: new URL(metricsUrl).host } : {}),
        ...(withSink ? { audit: { sinks: [{ name: 'local', type: 'file', path: auditPath, max_bytes: 2 ** 40 }] } } : {}),
      },
    };
    const gateways = {};
    await Promise.all(
      Object.entries(configs).map(async ([name, config]) => {
        mkdirSync(config.storage.dir, { mode: 0o700 });
        const entry = forkChild(`gateway-${name}`, join(BENCH, 'gateway.js'), [], {
          logFile: join(scratch.dir, `gateway-${name}-${index}.log`),
          execArgv: settings.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(scratch.dir, 'profiles', name, String(index))}`] : [],
          env: { ...process.env, BENCH_GATEWAY_LOG_LEVEL: settings.logLevel },
        });
        entry.child.send({ type: 'config', config });
        const ready = await waitForReady(entry, `gateway ${name}`, 30_000);
        gateways[name] = { entry, url: ready.url };
      }),
    );
    return { gateways, metricsUrl };
  };

  const headers = { 'content-type': 'application/json', authorization: `Bearer ${bearer}` };
  const load = (gateway, seconds, agent) =>
    (settings.rate > 0 ? pacedLoad : httpLoad)({ url: `${gateway.url}/v1/proxy/llm/v1/chat/completions`, headers, body: CHAT_BODY, connections: CONNECTIONS, seconds, expectBody: up.answer, rate: settings.rate, ...(agent === undefined ? {} : { agent }) });

  /**
   * Loads the two gateways one second each in turn, `settings.seconds` times each (round `index` says which goes
   * first), over keep-alive connections kept for the window; returns each one's loads merged. Each gateway's CPU is
   * read over the whole window, its idle seconds included: what its timers and senders do meanwhile is its own.
   */
  const inTurns = async (gateways, index) => {
    const agents = { plain: keepAgent(CONNECTIONS), observed: keepAgent(CONNECTIONS) };
    const slices = { plain: [], observed: [] };
    try {
      // Strictly in turns, so every second of each starts after a second of the other (caches cold alike); the
      // first goes first in odd rounds and second in even ones. Alternating pairs (P O, O P, …) gave one
      // gateway more seconds straight after its own and measured two plain gateways 3 % apart.
      const order = index % 2 === 1 ? ['plain', 'observed'] : ['observed', 'plain'];
      for (let s = 0; s < 2 * settings.seconds; s++) {
        const name = order[s % 2];
        slices[name].push(await load(gateways[name], 1, agents[name]));
      }
      // What the last second left to do (a log flush, an outbox flush, a sender's delivery) is done in the window.
      await new Promise((r) => setTimeout(r, SETTLE_MS));
    } finally {
      for (const agent of Object.values(agents)) agent.destroy();
    }
    return [mergeLoads(slices.plain), mergeLoads(slices.observed)];
  };

  const runs = [];
  let observedRequests = 0;
  // The observed gateway must really count and really write events, or the comparison means nothing.
  let exchangesCounted = withMetrics ? 0 : null;
  const audit = withSink ? auditTally(auditPath) : undefined;
  const auditRounds = [];
  for (let index = 1; index <= settings.rounds; index++) {
    const { gateways, metricsUrl } = await startGateways(index);
    let scraper;
    try {
      // Scraped as Prometheus would (more often than its usual 15 s), so the listener's cost is in the figure;
      // from the warm-up on, as a gateway in service is: the first scrapes take the node:http code the data path
      // runs hot through another server's objects, and V8 compiles it again for both (measured from the first
      // scrape instead, that one-off cost put metrics at +7 to +10 % where they cost +2.8 %).
      let scrapes = 0;
      scraper = withMetrics
        ? setInterval(() => {
            scrapes += 1;
            scrape(metricsUrl).catch(() => undefined);
          }, 1000)
        : undefined;
      let warmed = 0;
      if (settings.warmupSeconds > 0) {
        log(`round ${index}: warm-up of both gateways`);
        const [, observedWarmup] = await Promise.all([load(gateways.plain, settings.warmupSeconds), load(gateways.observed, settings.warmupSeconds)]);
        warmed = answered(observedWarmup);
      }
      /** The proxy exchanges the observed gateway has counted since it started. */
      const exchangesSeen = async () => metricSum(await scrape(metricsUrl), 'sluice_exchanges_total', 'via="proxy"');
      const exchangesBefore = withMetrics ? await exchangesSeen() : 0;
      const scrapesBefore = scrapes;
      log(`round ${index}: measuring both gateways ${settings.mode === 'together' ? 'together' : 'in turns of a second'} for ${settings.seconds}s each at c=${CONNECTIONS}`);
      const pids = { plain: gateways.plain.entry.child.pid, observed: gateways.observed.entry.child.pid, upstream: upstream.child.pid, loadgen: process.pid };
      const gatewayPids = { plain: pids.plain, observed: pids.observed };
      const before = cpuSnapshot(pids);
      const loopsBefore = cpuSnapshot(gatewayPids, mainThreadCpuMicros);
      const machineBefore = machineBusyMicros();
      const windowStarted = performance.now();
      const [plain, observed] = settings.mode === 'together' ? await Promise.all([load(gateways.plain, settings.seconds), load(gateways.observed, settings.seconds)]) : await inTurns(gateways, index);
      const machineAfter = machineBusyMicros();
      const elapsedS = (performance.now() - windowStarted) / 1000;
      const delta = cpuDelta(before, cpuSnapshot(pids));
      const loopDelta = cpuDelta(loopsBefore, cpuSnapshot(gatewayPids, mainThreadCpuMicros));
      clearInterval(scraper);
      // The gateway is new each round, so its counter holds the warm-up's exchanges too: all its audit file should get.
      const exchangesAfter = withMetrics ? await exchangesSeen() : undefined;
      if (withMetrics) exchangesCounted += exchangesAfter - exchangesBefore;
      if (audit !== undefined) {
        // Waited for before the stop: a stop leaves what the sender had not taken yet in this round's outbox.
        const expected = exchangesAfter ?? warmed + answered(observed);
        const delivered = await audit.waitFor(expected, 20_000);
        auditRounds.push({ round: index, expected, delivered });
      }
      observedRequests += observed.requests + observed.errors.total;
      const ours = Object.values(delta).reduce((n, us) => n + us, 0);
      // CPU used by processes that are not part of this bench (other jobs on the machine): noise.
      const otherPct = machineBefore !== undefined && machineAfter !== undefined ? round(Math.max(0, (100 * (machineAfter - machineBefore - ours)) / (elapsedS * 1e6)), 1) : null;
      for (const [name, r] of [['plain', plain], ['observed', observed]]) {
        runs.push({
          round: index,
          gateway: name,
          rps: r.rps,
          requests: r.requests,
          p50: r.p50,
          p99: r.p99,
          errors: r.errors,
          ...(r.late === undefined ? {} : { late: r.late }),
          gateway_cpu_us: Math.round(delta[name]),
          us_per_exchange: r.requests ? round(delta[name] / r.requests, 1) : null,
          event_loop_cpu_us: Math.round(loopDelta[name]),
          event_loop_us_per_exchange: r.requests ? round(loopDelta[name] / r.requests, 1) : null,
          gateway_util_pct: round((100 * delta[name]) / (elapsedS * 1e6), 1),
          loadgen_util_pct: round((100 * delta.loadgen) / (elapsedS * 1e6), 1),
          upstream_util_pct: round((100 * delta.upstream) / (elapsedS * 1e6), 1),
          other_processes_util_pct: otherPct,
          noisy: otherPct !== null && otherPct > NOISY_PCT,
          ...(name === 'observed' ? { scrapes: scrapes - scrapesBefore } : {}),
        });
        log(`round ${index} ${name}: ${r.rps} rps, ${runs.at(-1).us_per_exchange} µs CPU per exchange`);
      }
    } finally {
      clearInterval(scraper);
      await Promise.all(Object.values(gateways).map((g) => stopChild(g.entry, 10_000)));
    }
  }

  const profiles = {};
  if (settings.profile) {
    for (const name of ['plain', 'observed']) {
      profiles[name] = [];
      for (let index = 1; index <= settings.rounds; index++) {
        const dir = join(scratch.dir, 'profiles', name, String(index));
        for (const f of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) profiles[name].push({ round: index, ...summarizeProfile(join(dir, f), 20) });
      }
    }
    log(`profiles kept in ${join(scratch.dir, 'profiles')}`);
  }

  const per = {};
  for (const name of ['plain', 'observed']) {
    const mine = runs.filter((r) => r.gateway === name);
    const us = mine.reduce((n, r) => n + r.gateway_cpu_us, 0);
    const loopUs = mine.reduce((n, r) => n + r.event_loop_cpu_us, 0);
    const requests = mine.reduce((n, r) => n + r.requests, 0);
    // The sums, not a mean of ratios: a longer or busier run weighs what it measured.
    per[name] = {
      us_per_exchange: round(us / requests, 1),
      event_loop_us_per_exchange: round(loopUs / requests, 1),
      requests,
      rps_mean: round(mine.reduce((n, r) => n + r.rps, 0) / mine.length, 1),
    };
  }
  const ratio = per.observed.us_per_exchange / per.plain.us_per_exchange;
  // Each round's own ratio: both gateways ran at once, so whatever the machine did then fell on both.
  const roundPcts = [];
  for (let index = 1; index <= settings.rounds; index++) {
    const usOf = (name) => {
      const run = runs.find((r) => r.round === index && r.gateway === name);
      return run.gateway_cpu_us / run.requests;
    };
    roundPcts.push(round((usOf('observed') / usOf('plain') - 1) * 100, 1));
  }
  const medianPct = [...roundPcts].sort((a, b) => a - b)[Math.floor((roundPcts.length - 1) / 2)];
  const errorTotal = runs.reduce((n, r) => n + r.errors.total, 0);
  const output = {
    machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model, node: process.version, loadavg_1m_at_end: round(loadavg()[0], 2) },
    config: {
      seconds: settings.seconds,
      warmup_seconds: settings.warmupSeconds,
      connections: CONNECTIONS,
      rate_rps: settings.rate || 'as fast as answered',
      route: 'POST /v1/proxy/llm/v1/chat/completions, bearer JWT, fixed-answer upstream',
      rounds: settings.rounds,
      mode: settings.mode,
      measured:
        settings.mode === 'together'
          ? 'both gateways loaded at the same time in each round, each at the rate'
          : 'the gateways loaded a second each in turn, each second at the rate; CPU over the whole window',
      plain: 'startGateway, recording on (defaults), no metrics_listen, no audit.sinks',
      observe: settings.observe,
      observed: [
        'the same plus',
        ...(withMetrics ? ['metrics_listen (scraped every second while loaded)'] : []),
        ...(withSink ? ['audit.sinks [{type: file}]'] : []),
      ].join(' '),
      gateway_log_level: settings.logLevel,
      cpu: 'user + system time of the gateway process (/proc/<pid>/stat) over the measurement, per exchange answered 2xx with the expected body; event_loop_*: its main thread alone (/proc/<pid>/task/<pid>/stat)',
    },
    results: {
      runs,
      plain: per.plain,
      observed: per.observed,
      ratio: round(ratio),
      added_pct: round((ratio - 1) * 100, 1),
      rounds_added_pct: roundPcts,
      median_round_added_pct: medianPct,
      // The same for the event loop alone: what the data path waits for, apart from helper threads.
      event_loop_added_pct: round((per.observed.event_loop_us_per_exchange / per.plain.event_loop_us_per_exchange - 1) * 100, 1),
      check: {
        exchanges_counted_by_metrics: exchangesCounted,
        exchanges_sent_to_observed: observedRequests,
        // Per round, warm-up included: the exchanges the observed gateway saw through (its own counter with
        // metrics on, else the load's answers) and the `exchange` events its sink wrote before it was stopped.
        audit_rounds: auditRounds,
      },
    },
    targets: { added_pct_max: ADDED_PCT_MAX },
    pass: {
      added_pct: (ratio - 1) * 100 <= ADDED_PCT_MAX,
      median_round_added_pct: medianPct <= ADDED_PCT_MAX,
      // With only one of the two turned on, the other's half of the check has nothing to compare.
      audit_written: withSink ? auditRounds.every((r) => r.expected > 0 && r.delivered === r.expected) : true,
      no_errors: errorTotal === 0,
      rate_held: settings.rate === 0 || runs.every((r) => r.rps >= RATE_HELD_SHARE * settings.rate),
      // On a busy machine CPU per exchange grows with contention (caches, steal): the ratio is then a rough one.
      quiet: runs.every((r) => !r.noisy),
    },
    ...(settings.profile ? { profiles } : {}),
    elapsed_s: round((Date.now() - t0) / 1000, 1),
  };
  const text = `${JSON.stringify(output, null, 2)}\n`;
  if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, text);
  process.stdout.write(text);
}

await runMain(main, scratch, () => idp?.close());
