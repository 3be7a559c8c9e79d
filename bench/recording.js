// `node bench/recording.js`: what recording costs, in one run. JSON result on stdout, progress on stderr.
//
// Three gateways on the same upstreams, each in its own child process, measured one after the other:
//
//   off        this file run with --gateway-off: the proxy route (fastify, same bearer-token check, same
//              policy and masking stages, createExchangeHandler) WITHOUT the durable recorder (the
//              proxy route's default session recorder, which keeps nothing). The real gateway has no recording-off switch: buildApp
//              refuses connections without storage.master_key, and `record: none` still writes
//              request/end records. So "off" is the pipeline without the recorder, nothing more.
//   on_masked  bench/gateway.js (startGateway), default `record: {request_body: masked, response_body: masked}`
//   on_raw     bench/gateway.js, `record: {request_body: raw, response_body: raw}` (worst case for disk)
//   on_s3      bench/gateway.js, record defaults as on_masked, plus `storage.recordings: {type: s3}` on an
//              s3rver in a child (bench/s3-server.js), `storage.upload_interval` BENCH_S3_UPLOAD_INTERVAL (1s), so segments
//              go up during every measurement: what shipping to a bucket adds to the data path
//
// Figures: latency of a non-streamed POST /v1/chat/completions at concurrency 1 through
// /v1/proxy/<conn>/..., and complete time of a streamed (100-chunk SSE) answer at concurrency 1; then the
// bytes the ON gateways added under <storage.dir>/sessions/** during the measured exchanges, per byte of
// traffic counted at the client (request body + response body; HTTP headers NOT counted).
//
// Then upload throughput: a fresh gateway with `storage.recordings: {type: s3}` starts on the storage.dir the
// stopped on_raw gateway left, as a restarted replica does, and ships the sealed sessions it finds there.
// MB/s = their bytes / (first request the bucket sees from it -> the last session object stored), checked
// against `sluice_recordings_uploaded_bytes_total` and `sluice_recordings_spooled` on its metrics listener.
//
// Env: BENCH_SECONDS (4) per measurement, BENCH_WARMUP_SECONDS (1), BENCH_CHUNKS (100),
// BENCH_GATEWAY_LOG_LEVEL (info), BENCH_MAX_SECONDS (300, hard stop), BENCH_S3_UPLOAD_INTERVAL (1s; 60s keeps
// uploads out of the measurement, to tell their cost from the archive's), BENCH_COMPRESSION (the gateways'
// storage.compression, `deflate` or `none`; unset: their default), BENCH_OUT=file.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH = fileURLToPath(new URL('.', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------------------------------
// Child mode: the "off" gateway.

async function runOffGateway() {
  const { default: Fastify } = await import('fastify');
  const { validateConfig } = await import('../dist/server/config/load.js');
  const { createTokenVerifier } = await import('../dist/server/identity/token-verifier.js');
  const { createAuthenticate } = await import('../dist/server/identity/authenticate.js');
  const { registerProxyRoutes } = await import('../dist/server/api/proxy-route.js');
  const { createExchangeHandler } = await import('../dist/server/pipeline/run-exchange.js');
  const { compilePolicies } = await import('../dist/server/policy/policy-engine.js');
  const { createRulePolicyStage } = await import('../dist/server/policy/rule-policy-stage.js');
  const { loadMaskingProfiles } = await import('../dist/server/masking/load-profiles.js');
  const { createMaskingStage } = await import('../dist/server/masking/masking-stage.js');
  const { parseDuration } = await import('../dist/server/config/duration.js');

  const { serveFromParent } = await import('./procs.js');
  await serveFromParent(async (raw) => {
    const config = validateConfig(raw, { source: 'bench' });
    const level = process.env.BENCH_GATEWAY_LOG_LEVEL ?? 'info';
    // As buildApp sets fastify up (logging to stdout, which the parent sends to a file).
    const app = Fastify({
      logger: level === 'silent' ? false : { level },
      genReqId: () => `req_${randomUUID().replaceAll('-', '')}`,
      requestIdHeader: false,
      bodyLimit: 1024 * 1024,
      forceCloseConnections: true,
    });
    app.addHook('onSend', async (req, reply) => {
      reply.header('x-request-id', req.id);
    });
    const authenticate = createAuthenticate(createTokenVerifier({ identity: config.identity, roles: config.roles }));
    const policies = compilePolicies({ policies: config.policies, policyDefault: config.policy_default, defaultTimeoutMs: parseDuration(config.approval.default_timeout) });
    // The proxy route's default session is recorded nowhere: the pipeline without the durable recorder.
    const exchange = createExchangeHandler({
      masking: createMaskingStage({ profiles: await loadMaskingProfiles(config) }),
      policy: createRulePolicyStage({ engine: () => policies }),
    });
    app.addHook('onClose', async () => exchange.close());
    registerProxyRoutes(app, { connections: () => config.connections, authenticate: (req) => authenticate(req.headers), exchange });
    await app.listen({ host: '127.0.0.1', port: 0 });
    return { url: `http://127.0.0.1:${app.server.address().port}`, close: () => app.close() };
  });
}

if (process.argv[2] === '--gateway-off') {
  await runOffGateway();
} else {
  await runBench();
}

// ---------------------------------------------------------------------------------------------------
// Parent mode: the bench.

async function runBench() {
  const { difference, httpLoad, round, streamLoad } = await import('./load.js');
  const { envNumber, forkChild, freePort, guardRun, log, runMain, stopChild, waitForMessage, waitForReady } = await import('./procs.js');

  const settings = {
    seconds: envNumber('BENCH_SECONDS', 4, { min: 1, max: 120 }),
    warmupSeconds: envNumber('BENCH_WARMUP_SECONDS', 1, { min: 0, max: 30 }),
    chunks: envNumber('BENCH_CHUNKS', 100, { min: 1, max: 10_000 }),
    maxSeconds: envNumber('BENCH_MAX_SECONDS', 300, { min: 10, max: 3600 }),
    // How often on_s3 uploads open sessions' segments; 1s makes uploads run during every measurement.
    s3UploadInterval: process.env.BENCH_S3_UPLOAD_INTERVAL ?? '1s',
    logLevel: process.env.BENCH_GATEWAY_LOG_LEVEL ?? 'info',
    // What `none` costs on disk against the default, measured with the same traffic.
    compression: process.env.BENCH_COMPRESSION,
  };
  if (settings.compression !== undefined && settings.compression !== 'deflate' && settings.compression !== 'none') throw new Error('BENCH_COMPRESSION: deflate or none');
  const { AUDIENCE } = await import('./identity.js');
  const DISK_RATIO_MAX = 1.3;
  // Per kind of exchange: small ones (a few hundred bytes each way) and streamed answers.
  const PLAIN_RATIO_MAX = 1.5;
  const STREAMED_RATIO_MAX = 1.1;
  const CHAT_BODY = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'Say hello.' }], stream: false });
  const STREAM_BODY = JSON.stringify({ model: 'demo-echo', messages: [{ role: 'user', content: 'Say hello.' }], stream: true });
  const VARIANTS = ['off', 'on_masked', 'on_raw', 'on_s3'];
  // s3rver signs nothing; the gateway takes credentials from the AWS default chain only (the config refuses keys).
  const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_EC2_METADATA_DISABLED: 'true' };
  const S3_BUCKETS = { latency: 'bench-latency', ship: 'bench-ship' };

  let idp;
  const scratch = guardRun(settings.maxSeconds);

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /** Bytes of every file under dir (recursive, bounded depth); 0 when it does not exist. */
  function dirBytes(dir, depth = 0) {
    let total = 0;
    let entries = [];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return 0;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory() && depth < 8) total += dirBytes(p, depth + 1);
      else if (e.isFile()) total += statSync(p).size;
    }
    return total;
  }

  /** Prometheus text -> value of an unlabelled sample, undefined when absent. */
  function metricValue(text, name) {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.slice(name.length + 1));
  }

  /** Files under dir ending in suffix, with their sizes. */
  function filesEndingIn(dir, suffix, depth = 0) {
    let out = [];
    let entries = [];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return out;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory() && depth < 8) out = out.concat(filesEndingIn(p, suffix, depth + 1));
      else if (e.isFile() && e.name.endsWith(suffix)) out.push({ path: p, bytes: statSync(p).size });
    }
    return out;
  }

  async function sanity(label, url, headers, body, check) {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, signal: AbortSignal.timeout(15_000) });
    const text = await res.text();
    if (res.status !== 200 || !check(text)) throw new Error(`${label}: HTTP ${res.status} ${text.slice(0, 300)}`);
  }

  async function main() {
    const t0 = Date.now();
    scratch.dir = mkdtempSync(join(tmpdir(), 'sluice-bench-rec-'));
    log(`work dir ${scratch.dir}; ${settings.seconds}s per measurement after ${settings.warmupSeconds}s warm-up`);

    const { startBenchIdentity } = await import('./identity.js');
    let bearer;
    ({ idp, token: bearer } = await startBenchIdentity());

    const upstream = forkChild('upstream', join(BENCH, 'upstream.js'), [], {
      logFile: join(scratch.dir, 'upstream.log'),
      env: { ...process.env, BENCH_CHUNKS: String(settings.chunks), BENCH_CHUNK_DELAY_MS: '0' },
    });
    const up = await waitForMessage(upstream, (m) => m?.type === 'ready', 20_000, 'upstream ready');

    const s3 = forkChild('s3', join(BENCH, 's3-server.js'), [], {
      logFile: join(scratch.dir, 's3.log'),
      env: { ...process.env, BENCH_S3_BUCKETS: Object.values(S3_BUCKETS).join(',') },
    });
    s3.child.send({ type: 'config', config: {} });
    const s3Url = (await waitForMessage(s3, (m) => m?.type === 'ready', 20_000, 's3 ready')).url;
    const s3Recordings = (bucket) => ({ type: 's3', bucket, endpoint: s3Url, region: 'us-east-1', force_path_style: true });
    const askS3 = async (type) => {
      const reply = waitForMessage(s3, (m) => m?.type === type, 10_000, `s3 ${type}`);
      s3.child.send({ type });
      return reply;
    };

    const gatewayConfig = (dir, record) => ({
      listen: '127.0.0.1:0',
      identity: { issuer: idp.issuer, audience: AUDIENCE, cli_client_id: 'sluice-cli', groups_claim: 'groups' },
      storage: { dir, master_key: randomBytes(32).toString('base64'), ...(settings.compression === undefined ? {} : { compression: settings.compression }) },
      connections: [
        { name: 'llm', type: 'http', upstream: up.fastUrl, headers: { authorization: `Bearer ${up.fastKey}` }, allow_groups: ['ml-eng'], ...(record ? { record } : {}) },
        { name: 'llm-stream', type: 'http', upstream: up.modelUrl, headers: { authorization: `Bearer ${up.modelKey}` }, allow_groups: ['ml-eng'], ...(record ? { record } : {}) },
      ],
    });
    const dirs = { off: join(scratch.dir, 'data-off'), on_masked: join(scratch.dir, 'data-masked'), on_raw: join(scratch.dir, 'data-raw'), on_s3: join(scratch.dir, 'data-s3') };
    for (const d of Object.values(dirs)) mkdirSync(d, { mode: 0o700 });
    const specs = {
      off: { module: SELF, args: ['--gateway-off'], config: gatewayConfig(dirs.off) },
      on_masked: { module: join(BENCH, 'gateway.js'), args: [], config: gatewayConfig(dirs.on_masked) },
      on_raw: { module: join(BENCH, 'gateway.js'), args: [], config: gatewayConfig(dirs.on_raw, { request_body: 'raw', response_body: 'raw' }) },
      on_s3: { module: join(BENCH, 'gateway.js'), args: [], config: gatewayConfig(dirs.on_s3) },
    };
    specs.on_s3.config.storage = { ...specs.on_s3.config.storage, recordings: s3Recordings(S3_BUCKETS.latency), upload_interval: settings.s3UploadInterval };
    const gateways = {};
    for (const v of VARIANTS) {
      const entry = forkChild(`gateway-${v}`, specs[v].module, specs[v].args, {
        logFile: join(scratch.dir, `gateway-${v}.log`),
        env: { ...process.env, ...S3_ENV, BENCH_GATEWAY_LOG_LEVEL: settings.logLevel },
      });
      entry.child.send({ type: 'config', config: specs[v].config });
      const ready = await waitForReady(entry, `gateway ${v}`, 30_000);
      gateways[v] = { entry, url: ready.url };
      log(`gateway ${v} at ${ready.url}`);
    }

    const auth = { authorization: `Bearer ${bearer}` };
    const isSse = (text) => text.trimEnd().endsWith('data: [DONE]');
    const plainUrl = (v) => `${gateways[v].url}/v1/proxy/llm/v1/chat/completions`;
    const streamUrl = (v) => `${gateways[v].url}/v1/proxy/llm-stream/v1/chat/completions`;
    const plainRun = (v, seconds) =>
      httpLoad({ url: plainUrl(v), headers: { 'content-type': 'application/json', ...auth }, body: CHAT_BODY, connections: 1, seconds, expectBody: up.answer });
    const streamRun = (v, seconds) => streamLoad({ url: streamUrl(v), headers: auth, body: STREAM_BODY, connections: 1, seconds, minEvents: settings.chunks + 2 });

    for (const v of VARIANTS) {
      await sanity(`${v} plain`, plainUrl(v), auth, CHAT_BODY, (t) => t === up.answer);
      await sanity(`${v} stream`, streamUrl(v), auth, STREAM_BODY, isSse);
    }
    if (settings.warmupSeconds > 0) {
      for (const v of VARIANTS) {
        log(`warm-up ${v}`);
        await plainRun(v, settings.warmupSeconds);
        await streamRun(v, settings.warmupSeconds);
      }
    }
    await sleep(500); // past storage.fsync_interval (200ms): queued records of the warm-up are written
    const diskBefore = { on_masked: dirBytes(join(dirs.on_masked, 'sessions')), on_raw: dirBytes(join(dirs.on_raw, 'sessions')) };

    const latency = {};
    const stream = {};
    for (const v of VARIANTS) {
      log(`latency c1 ${v}: measuring ${settings.seconds}s`);
      latency[v] = await plainRun(v, settings.seconds);
      log(`latency c1 ${v}: p50 ${latency[v].p50} ms, p99 ${latency[v].p99} ms, ${latency[v].requests} requests`);
    }
    await sleep(500);
    const diskMid = { on_masked: dirBytes(join(dirs.on_masked, 'sessions')), on_raw: dirBytes(join(dirs.on_raw, 'sessions')) };
    for (const v of VARIANTS) {
      log(`stream c1 ${v}: measuring ${settings.seconds}s`);
      stream[v] = await streamRun(v, settings.seconds);
      log(`stream c1 ${v}: complete p50 ${stream[v].complete.p50} ms, ${stream[v].answers} answers`);
    }

    // Stop the recording gateways: every open session is sealed (checkpoint record) before they exit.
    for (const v of ['on_masked', 'on_raw', 'on_s3']) await stopChild(gateways[v].entry, 10_000);
    const reqBytes = Buffer.byteLength(CHAT_BODY);
    const ansBytes = Buffer.byteLength(up.answer);
    const streamReqBytes = Buffer.byteLength(STREAM_BODY);
    const disk = {};
    for (const [key, v] of [
      ['raw', 'on_raw'],
      ['masked', 'on_masked'],
    ]) {
      const after = dirBytes(join(dirs[v], 'sessions'));
      const l = latency[v];
      const s = stream[v];
      // Only exchanges that completed whole are counted as traffic; failed ones (reported in errors) are left out.
      const plainTraffic = l.requests * (reqBytes + ansBytes);
      const streamTraffic = s.answers * streamReqBytes + Math.round(s.answers * s.bytes_per_answer);
      const traffic = plainTraffic + streamTraffic;
      const added = after - diskBefore[v];
      const plainDisk = diskMid[v] - diskBefore[v];
      disk[key] = {
        record: v === 'on_raw' ? { request_body: 'raw', response_body: 'raw' } : { request_body: 'masked', response_body: 'masked' },
        disk_bytes: added,
        traffic_bytes: traffic,
        ratio: round(traffic ? added / traffic : null),
        exchanges: { plain: l.requests, streamed: s.answers },
        // The plain phase ends (for every gateway) before the streamed one starts: disk is split at that point.
        plain: {
          disk_bytes: plainDisk,
          traffic_bytes: plainTraffic,
          ratio: round(plainTraffic ? plainDisk / plainTraffic : null),
          disk_bytes_per_exchange: round(l.requests ? plainDisk / l.requests : null, 0),
        },
        streamed: {
          disk_bytes: after - diskMid[v],
          traffic_bytes: streamTraffic,
          ratio: round(streamTraffic ? (after - diskMid[v]) / streamTraffic : null),
          disk_bytes_per_exchange: round(s.answers ? (after - diskMid[v]) / s.answers : null, 0),
        },
        sessions_dir_bytes_total_after: after,
      };
    }

    /**
     * Upload throughput: a gateway with storage.recordings on s3 starts on the storage.dir the stopped on_raw
     * gateway left (sealed sessions, bodies kept) and ships them, as a restarted replica ships its spool.
     */
    async function measureUpload() {
      const sealed = filesEndingIn(join(dirs.on_raw, 'sessions'), '.rec');
      const bytes = sealed.reduce((n, f) => n + f.bytes, 0);
      const metricsPort = await freePort();
      const config = { ...specs.on_raw.config, metrics_listen: `127.0.0.1:${metricsPort}` };
      config.storage = { ...config.storage, recordings: s3Recordings(S3_BUCKETS.ship) };
      await askS3('reset');
      log(`upload: shipping ${sealed.length} sealed sessions, ${bytes} bytes`);
      const forkedAt = performance.now();
      const entry = forkChild('gateway-ship', join(BENCH, 'gateway.js'), [], {
        logFile: join(scratch.dir, 'gateway-ship.log'),
        env: { ...process.env, ...S3_ENV, BENCH_GATEWAY_LOG_LEVEL: settings.logLevel },
      });
      entry.child.send({ type: 'config', config });
      await waitForReady(entry, 'gateway ship', 30_000);
      // The spool is empty once every sealed session is in the bucket and no upload is pending.
      const deadline = Date.now() + 120_000;
      let metrics;
      for (;;) {
        const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) }).then((r) => r.text());
        metrics = {
          uploaded_bytes_total: metricValue(text, 'sluice_recordings_uploaded_bytes_total'),
          spooled: metricValue(text, 'sluice_recordings_spooled'),
          quarantined: metricValue(text, 'sluice_recordings_quarantined'),
          upload_failures_total: metricValue(text, 'sluice_recordings_upload_failures_total'),
        };
        if (metrics.spooled === 0 && filesEndingIn(join(dirs.on_raw, 'sessions'), '.rec').length === 0) break;
        if (metrics.quarantined > 0) throw new Error(`upload: a session was quarantined: ${JSON.stringify(metrics)}`);
        if (Date.now() > deadline) throw new Error(`upload: spool not empty after 120 s: ${JSON.stringify(metrics)}`);
        await sleep(20);
      }
      const emptyAt = performance.now();
      const { first_request_at: firstAt, puts } = await askS3('puts');
      await stopChild(entry, 10_000);
      const sessionPuts = puts.filter((p) => p.key.endsWith('.rec') && p.status < 300);
      if (sessionPuts.length !== sealed.length) throw new Error(`upload: ${sealed.length} sealed sessions, the bucket stored ${sessionPuts.length}`);
      const seconds = (Math.max(...sessionPuts.map((p) => p.end)) - firstAt) / 1000;
      const putSeconds = (Math.max(...sessionPuts.map((p) => p.end)) - Math.min(...sessionPuts.map((p) => p.start))) / 1000;
      const mb = bytes / 1e6;
      return {
        sessions: sealed.length,
        bytes,
        session_bytes: sealed.map((f) => f.bytes),
        seconds: round(seconds),
        mb_per_s: round(mb / seconds, 1),
        put_seconds: round(putSeconds),
        put_mb_per_s: round(mb / putSeconds, 1),
        fork_to_spool_empty_s: round((emptyAt - forkedAt) / 1000),
        metrics,
        metrics_match: metrics.uploaded_bytes_total === bytes,
      };
    }

    const upload = await measureUpload();

    const pick = (r) => ({ p50: r.p50, p99: r.p99, mean: r.mean, requests: r.requests, errors: r.errors });
    const latencyOut = {};
    const streamOut = {};
    for (const v of VARIANTS) {
      latencyOut[v] = pick(latency[v]);
      streamOut[v] = { complete: stream[v].complete, ttfb: stream[v].ttfb, answers: stream[v].answers, bytes_per_answer: stream[v].bytes_per_answer, errors: stream[v].errors };
      if (v !== 'off') {
        latencyOut[v].added_p50_ms = difference(latency[v].p50, latency.off.p50);
        latencyOut[v].added_p99_ms = difference(latency[v].p99, latency.off.p99);
        streamOut[v].added_complete_p50_ms = round(stream[v].complete.p50 - stream.off.complete.p50);
      }
    }
    // The bucket against local-only recording: same record settings (defaults), only storage.recordings differs.
    latencyOut.on_s3.s3_minus_local_p50_ms = round(latency.on_s3.p50 - latency.on_masked.p50);
    latencyOut.on_s3.s3_minus_local_p99_ms = round(latency.on_s3.p99 - latency.on_masked.p99);
    streamOut.on_s3.s3_minus_local_complete_p50_ms = round(stream.on_s3.complete.p50 - stream.on_masked.complete.p50);
    const errorTotal = VARIANTS.reduce((n, v) => n + latency[v].errors.total + stream[v].errors.total, 0);
    const output = {
      machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model, node: process.version, loadavg_1m_at_end: round(loadavg()[0], 2) },
      config: {
        seconds: settings.seconds,
        warmup_seconds: settings.warmupSeconds,
        route: 'POST /v1/proxy/<conn>/v1/chat/completions, bearer JWT, concurrency 1',
        request: { body_bytes: reqBytes, answer_bytes: ansBytes },
        stream: { chunks: settings.chunks, chunk_delay_ms: 0, request_body_bytes: streamReqBytes, upstream: 'demo model server (startModelServer)' },
        off: 'pipeline without the durable recorder: fastify + registerProxyRoutes + createExchangeHandler, sessions recorded nowhere (same token check, policy and masking stages); the real gateway cannot run connections unrecorded',
        on: `startGateway (as \`sluice serve\`), recording on, storage.fsync batch, storage.compression ${settings.compression ?? 'default (deflate)'}; on_masked = record defaults (masked: with no masking profile configured, bodies are kept as sent), on_raw = record raw/raw (bodies kept), on_s3 = on_masked plus storage.recordings {type: s3} on s3rver (bench/s3-server.js) with storage.upload_interval ${settings.s3UploadInterval}`,
        upload: 'a gateway with storage.recordings {type: s3} started on the storage.dir on_raw left, shipping its sealed sessions as a restarted replica does; seconds = first request the bucket saw from it -> last session object stored; put_seconds = first to last session PUT; metrics from its metrics_listen once sluice_recordings_spooled is 0',
        traffic_bytes: 'counted at the client: request body + response body bytes of the measured, completed exchanges (plain + streamed); HTTP headers not counted',
        disk_bytes: 'growth of <storage.dir>/sessions/** from after the warm-up to after the gateway stopped (sessions sealed)',
        gateway_log_level: settings.logLevel,
        processes: 'bench (load + idle IdP), upstream, and the three gateways each in their own process; only one gateway is loaded at a time',
      },
      results: { latency_c1: latencyOut, stream_c1: streamOut, disk, upload },
      targets: { disk_ratio_max: DISK_RATIO_MAX, plain_ratio_max: PLAIN_RATIO_MAX, streamed_ratio_max: STREAMED_RATIO_MAX },
      pass: {
        disk_ratio_raw: disk.raw.ratio !== null && disk.raw.ratio <= DISK_RATIO_MAX,
        disk_ratio_masked: disk.masked.ratio !== null && disk.masked.ratio <= DISK_RATIO_MAX,
        upload_metrics_match: upload.metrics_match,
        // The blended ratio depends on the mix (streamed answers are ~20 KB, plain exchanges ~0.4 KB): each kind on its own.
        disk_ratio_raw_plain: disk.raw.plain.ratio !== null && disk.raw.plain.ratio <= PLAIN_RATIO_MAX,
        disk_ratio_raw_streamed: disk.raw.streamed.ratio !== null && disk.raw.streamed.ratio <= STREAMED_RATIO_MAX,
        disk_ratio_masked_plain: disk.masked.plain.ratio !== null && disk.masked.plain.ratio <= PLAIN_RATIO_MAX,
        disk_ratio_masked_streamed: disk.masked.streamed.ratio !== null && disk.masked.streamed.ratio <= STREAMED_RATIO_MAX,
        no_errors: errorTotal === 0,
      },
      elapsed_s: round((Date.now() - t0) / 1000, 1),
    };
    const text = `${JSON.stringify(output, null, 2)}\n`;
    if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, text);
    process.stdout.write(text);
  }

  await runMain(main, scratch, () => idp?.close());
}
