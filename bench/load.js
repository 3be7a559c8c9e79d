// Load generators, run in the bench's own (parent) process.
//
//  - `httpLoad`: autocannon, closed loop, N keep-alive connections. autocannon's histogram keeps whole
//    milliseconds, too coarse for a 1 ms budget, so each response's exact duration (its 'response'
//    event, from hrtime) is collected and the percentiles are computed here.
//  - `streamLoad`: SSE answers over node:http keep-alive sockets, N loops in parallel; per answer the
//    time to the first body byte and to the end, and whether it arrived whole (ends with [DONE]).
import { Agent, request } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';

/** Upper bound on samples kept per measurement (memory), and on answers per streaming loop (count bound). */
const MAX_SAMPLES = 2_000_000;
const MAX_ANSWERS_PER_LOOP = 1_000_000;

export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function round(value, digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** The machine a run measured on, as its result reports it: the load average it started and ended with. */
export function machineInfo(loadavgAtStart) {
  return {
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadavg_1m_at_start: loadavgAtStart,
    loadavg_1m_at_end: round(loadavg()[0], 2),
  };
}

function summarize(samples) {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    mean: round(sorted.length ? sum / sorted.length : null),
    max: round(sorted.length ? sorted[sorted.length - 1] : null),
  };
}

/**
 * One autocannon run. Returns latency percentiles (ms, 2xx only), throughput (2xx per second) and every
 * kind of failure autocannon counts: socket errors, timeouts, non-2xx answers, body mismatches.
 */
export function httpLoad({ url, method = 'POST', headers, body, connections, seconds, expectBody, timeoutSeconds = 10 }) {
  return new Promise((resolve, reject) => {
    const durations = [];
    const statusCounts = {};
    const started = performance.now();
    const instance = autocannon(
      {
        url,
        method,
        headers,
        body,
        connections,
        duration: seconds,
        timeout: timeoutSeconds,
        expectBody,
        // Keep every error out of the latency figures; they are counted below.
        excludeErrorStats: true,
      },
      (err, result) => {
        if (err) {
          reject(err);
          return;
        }
        const elapsedS = (performance.now() - started) / 1000;
        const ok = result['2xx'] ?? 0;
        const errors = {
          non2xx: result.non2xx ?? 0,
          socket: result.errors ?? 0,
          timeouts: result.timeouts ?? 0,
          mismatches: result.mismatches ?? 0,
          resets: result.resets ?? 0,
        };
        // autocannon counts timeouts inside `errors` as well; don't count them twice.
        errors.total = errors.non2xx + errors.socket + errors.mismatches;
        // A 2xx with the wrong body is counted as 2xx by autocannon: it is an error here, not throughput.
        const good = Math.max(0, ok - errors.mismatches);
        resolve({
          ...summarize(durations),
          requests: good,
          duration_s: round(result.duration ?? elapsedS, 2),
          rps: round(good / (result.duration || elapsedS), 1),
          errors,
          status_counts: statusCounts,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      statusCounts[statusCode] = (statusCounts[statusCode] ?? 0) + 1;
      if (statusCode >= 200 && statusCode < 300 && durations.length < MAX_SAMPLES) durations.push(responseTime);
    });
  });
}

const DONE_MARK = Buffer.from('data: [DONE]\n\n');
const EVENT_MARK = Buffer.from('data: ');

function countOccurrences(buf, needle) {
  let count = 0;
  let at = buf.indexOf(needle);
  while (at !== -1 && count < 1_000_000) {
    count += 1;
    at = buf.indexOf(needle, at + needle.length);
  }
  return count;
}

/**
 * `connections` loops, each sending one streamed request at a time over its own keep-alive socket, until
 * `seconds` have passed. An answer counts as complete only with a 2xx status, no socket error and a body
 * that ends with `data: [DONE]` carrying at least `minEvents` SSE events.
 */
export async function streamLoad({ url, headers, body, connections, seconds, minEvents, timeoutMs = 15_000 }) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const payload = Buffer.from(body);
  const allHeaders = { ...headers, 'content-type': 'application/json', 'content-length': payload.length, accept: 'text/event-stream' };
  const ttfb = [];
  const total = [];
  const errors = { non2xx: 0, socket: 0, timeouts: 0, incomplete: 0 };
  const statusCounts = {};
  let reads = 0;
  let events = 0;
  let bytes = 0;
  let firstError;
  const started = performance.now();
  const deadline = started + seconds * 1000;

  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now();
      let settled = false;
      const finish = (kind, detail) => {
        if (settled) return;
        settled = true;
        if (kind !== 'ok') {
          errors[kind] += 1;
          firstError ??= detail;
        }
        resolve();
      };
      const req = request(url, { method: 'POST', agent, headers: allHeaders }, (res) => {
        statusCounts[res.statusCode] = (statusCounts[res.statusCode] ?? 0) + 1;
        const parts = [];
        let first = -1;
        res.on('data', (chunk) => {
          if (first < 0) first = performance.now();
          reads += 1;
          parts.push(chunk);
        });
        res.on('end', () => {
          const end = performance.now();
          const all = Buffer.concat(parts);
          if (res.statusCode < 200 || res.statusCode >= 300) {
            finish('non2xx', `HTTP ${res.statusCode}: ${all.subarray(0, 300).toString()}`);
            return;
          }
          const n = countOccurrences(all, EVENT_MARK);
          const whole = all.length >= DONE_MARK.length && all.subarray(all.length - DONE_MARK.length).equals(DONE_MARK);
          if (!whole || n < minEvents) {
            finish('incomplete', `answer with ${n} events, ends ${JSON.stringify(all.subarray(-40).toString())}`);
            return;
          }
          events += n;
          bytes += all.length;
          if (ttfb.length < MAX_SAMPLES) {
            ttfb.push(first - t0);
            total.push(end - t0);
          }
          finish('ok');
        });
        res.on('error', (err) => finish('socket', String(err)));
        res.on('aborted', () => finish('socket', 'response aborted'));
      });
      req.setTimeout(timeoutMs, () => {
        finish('timeouts', `no answer within ${timeoutMs} ms`);
        req.destroy(new Error('timeout'));
      });
      req.on('error', (err) => finish('socket', String(err)));
      req.end(payload);
    });

  const loop = async () => {
    for (let i = 0; i < MAX_ANSWERS_PER_LOOP && performance.now() < deadline; i += 1) await one();
  };
  await Promise.all(Array.from({ length: connections }, loop));
  const elapsedS = (performance.now() - started) / 1000;
  agent.destroy();

  const answers = total.length;
  errors.total = errors.non2xx + errors.socket + errors.timeouts + errors.incomplete;
  const t = summarize(total);
  const f = summarize(ttfb);
  return {
    ttfb: { p50: f.p50, p99: f.p99, mean: f.mean },
    complete: { p50: t.p50, p99: t.p99, mean: t.mean },
    answers,
    duration_s: round(elapsedS, 2),
    answers_per_s: round(answers / elapsedS, 1),
    events_per_answer: round(answers ? events / answers : null, 1),
    // HTTP body chunks ('data' events) per answer: each SSE event should still be a chunk of its own.
    http_chunks_per_answer: round(answers ? reads / (answers + errors.incomplete + errors.non2xx) : null, 1),
    bytes_per_answer: round(answers ? bytes / answers : null, 0),
    errors,
    status_counts: statusCounts,
    ...(firstError ? { first_error: firstError } : {}),
  };
}
