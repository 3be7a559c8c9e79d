// Load generators, run in the bench's own (parent) process.
//
//  - `httpLoad`: autocannon, closed loop, N keep-alive connections. autocannon's histogram keeps whole
//    milliseconds, too coarse for a 1 ms budget, so each response's exact duration (its 'response'
//    event, from hrtime) is collected and the percentiles are computed here.
//  - `pacedLoad`: a fixed rate spread evenly over N keep-alive connections (node:http), the same figures.
//  - `streamLoad`: SSE answers over node:http keep-alive sockets, N loops in parallel; per answer the
//    time to the first body byte and to the end, and whether it arrived whole (ends with [DONE]).
//  - `openStreams`: the same kind of loops, open-ended and measured in windows (`mark()`), with the gap
//    between consecutive SSE events of an answer: the capacity part runs it in a process of its own
//    (stream-clients.js) while it reads the other processes' CPU over the same window.
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

/** `a − b`, rounded; null when either is missing (a measurement in which nothing arrived has null percentiles). */
export function difference(a, b, digits = 3) {
  return a === null || a === undefined || b === null || b === undefined ? null : round(a - b, digits);
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

/** p50/p90/p99/mean/max of a list of samples (ms), rounded. */
export function summarize(samples) {
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
 * kind of failure autocannon counts: socket errors, timeouts, non-2xx answers, body mismatches. `rate`
 * (requests per second over all connections) caps the load instead of sending as much as the target takes:
 * autocannon's `overallRate`, a count per second that its connections send at the start of each second.
 */
export function httpLoad({ url, method = 'POST', headers, body, connections, seconds, expectBody, timeoutSeconds = 10, rate }) {
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
        ...(rate ? { overallRate: rate } : {}),
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

/**
 * `rate` requests a second spread evenly over time: `connections` request loops over a keep-alive agent of
 * as many sockets, each loop sending its next request `connections / rate` seconds after its previous one was
 * due (loop i starting `i / rate` after the first), so a request leaves every `1 / rate` seconds. A request
 * whose time has passed (its loop still waited for the answer before, or the generator stalled) leaves at
 * once (`late` counts those); one later than a whole spacing makes its loop's later times count from then,
 * so nothing is sent in a burst to catch up: a target slower than the rate gets fewer requests (`rps` tells),
 * and the run ends at `seconds`.
 * Unlike autocannon's `overallRate`, which sends each second's requests at its start, nothing arrives in
 * bursts: a burst a second made two gateways loaded side by side contend for the cores at the same moments,
 * and their CPU per exchange moved by ±20 % from one five-second round to the next.
 *
 * Returns what `httpLoad` returns (2xx answers with `expectBody` as `requests`), and `late`.
 */
export async function pacedLoad({ url, headers, body, connections, seconds, expectBody, rate, timeoutMs = 10_000, agent: given }) {
  // A caller's agent (`keepAgent`) keeps its sockets open across runs; else one for this run.
  const agent = given ?? keepAgent(connections);
  const payload = Buffer.from(body);
  const allHeaders = { ...headers, 'content-length': payload.length };
  const durations = [];
  const statusCounts = {};
  const errors = { non2xx: 0, socket: 0, timeouts: 0, mismatches: 0, resets: 0 };
  let good = 0;
  let late = 0;
  let firstError;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const spacingMs = (connections * 1000) / rate;

  const one = async () => {
    const t0 = performance.now();
    const [kind, detail] = await requestOnce({ url, agent, headers: allHeaders, payload, timeoutMs }, (res, finish) => {
      statusCounts[res.statusCode] = (statusCounts[res.statusCode] ?? 0) + 1;
      const parts = [];
      res.on('data', (chunk) => parts.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString();
        if (res.statusCode < 200 || res.statusCode >= 300) return finish('non2xx', `HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
        if (expectBody !== undefined && text !== expectBody) return finish('mismatches', `unexpected body ${JSON.stringify(text.slice(0, 120))}`);
        good += 1;
        if (durations.length < MAX_SAMPLES) durations.push(performance.now() - t0);
        finish('ok');
      });
    });
    if (kind !== 'ok') {
      errors[kind] += 1;
      firstError ??= detail;
    }
  };

  const loop = async (index) => {
    let due = started + (index * 1000) / rate;
    while (due < deadline) {
      const now = performance.now();
      if (now >= deadline) break;
      if (due > now) await new Promise((r) => setTimeout(r, due - now));
      else if (now - due > 1) {
        // Late (the answer before came after this request's time, or the generator itself stalled): sent now.
        // Later than a whole spacing, the slots missed are skipped rather than sent back to back, so a stall
        // never becomes a burst; less late, the loop keeps its times and so the rate.
        late += 1;
        if (now - due > spacingMs) due = now;
      }
      await one();
      due += spacingMs;
    }
  };
  await Promise.all(Array.from({ length: connections }, (_, i) => loop(i)));
  const elapsedS = (performance.now() - started) / 1000;
  if (given === undefined) agent.destroy();
  errors.total = errors.non2xx + errors.socket + errors.timeouts + errors.mismatches;
  return {
    ...summarize(durations),
    requests: good,
    duration_s: round(elapsedS, 2),
    rps: round(good / elapsedS, 1),
    late,
    errors,
    status_counts: statusCounts,
    ...(firstError ? { first_error: firstError } : {}),
  };
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
  const agent = keepAgent(connections);
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

  const one = async () => {
    const t0 = performance.now();
    const [kind, detail] = await requestOnce({ url, agent, headers: allHeaders, payload, timeoutMs }, (res, finish) => {
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
    });
    if (kind !== 'ok') {
      errors[kind] += 1;
      firstError ??= detail;
    }
  };

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

const EVENT_END = Buffer.from('\n\n');
/** A token event this soon after the one before was held back somewhere and sent with it (paced 20 ms apart). */
const BUNCHED_GAP_MS = 1;
const NEWLINE = 0x0a;

/**
 * `streams` loops, each sending one streamed request at a time over its own keep-alive socket, until
 * `stop()`. Loop i starts `i / streams` of `staggerMs` after the first, so answers paced by the upstream do
 * not all begin (and end) at once. An answer is parsed only as far as counting SSE events (a blank line
 * ends one), so the generator stays cheap: its event 0 is the first the upstream writes, and the gaps
 * between events 0..`gapEvents` (the tokens, at the upstream's pace) are the inter-token gaps. Events that
 * arrive in one read have a gap of 0: the first of them was late. Complete, as in `streamLoad`: 2xx, no
 * socket error, ends with `data: [DONE]`, at least `minEvents` events.
 *
 * `mark()` returns what happened since the previous mark (the first: since the start) and starts a new
 * window: `token_events` (events 1..`gapEvents` that arrived in it), `events`, `answers` (completed in it),
 * `ttfb` (answers whose first byte arrived in it), `gap` (with `bunched_pct`: token events that came less
 * than 1 ms after the one before), `errors`, `in_flight`, `window_s`.
 */
export function openStreams({ url, headers, body, streams, minEvents, gapEvents, staggerMs = 0, timeoutMs = 60_000 }) {
  const agent = keepAgent(streams);
  const payload = Buffer.from(body);
  const allHeaders = { ...headers, 'content-type': 'application/json', 'content-length': payload.length, accept: 'text/event-stream' };
  let stopping = false;
  let inFlight = 0;
  const newWindow = () => ({
    started: performance.now(),
    ttfb: [],
    gaps: [],
    tokenEvents: 0,
    events: 0,
    answers: 0,
    bytes: 0,
    bunched: 0,
    errors: { non2xx: 0, socket: 0, timeouts: 0, incomplete: 0 },
    statusCounts: {},
    firstError: undefined,
  });
  let win = newWindow();

  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now();
      let settled = false;
      inFlight += 1;
      const finish = (kind, detail) => {
        if (settled) return;
        settled = true;
        inFlight -= 1;
        if (kind !== 'ok' && !stopping) {
          win.errors[kind] += 1;
          win.firstError ??= detail;
        }
        resolve(kind === 'ok');
      };
      const req = request(url, { method: 'POST', agent, headers: allHeaders }, (res) => {
        win.statusCounts[res.statusCode] = (win.statusCounts[res.statusCode] ?? 0) + 1;
        const ok = res.statusCode >= 200 && res.statusCode < 300;
        let n = 0; // events ended so far
        let last = 0; // arrival of the last event ended
        let endedWithNewline = false; // a "\n\n" may straddle two reads
        let tail = Buffer.alloc(0); // the answer's last bytes, for the [DONE] check
        let errorBody = '';
        res.on('data', (chunk) => {
          const now = performance.now();
          if (n === 0 && last === 0) {
            last = now;
            if (ok && win.ttfb.length < MAX_SAMPLES) win.ttfb.push(now - t0);
          }
          if (!ok) {
            if (errorBody.length < 300) errorBody += chunk.toString('utf8', 0, Math.min(chunk.length, 300));
            return;
          }
          win.bytes += chunk.length;
          let ended = endedWithNewline && chunk[0] === NEWLINE ? 1 : 0;
          for (let at = chunk.indexOf(EVENT_END, ended); at !== -1 && ended < 1_000_000; at = chunk.indexOf(EVENT_END, at + 2)) ended += 1;
          endedWithNewline = chunk[chunk.length - 1] === NEWLINE;
          for (let i = 0; i < ended; i += 1) {
            if (n >= 1 && n <= gapEvents) {
              win.tokenEvents += 1;
              const gap = i === 0 ? now - last : 0;
              if (gap < BUNCHED_GAP_MS) win.bunched += 1;
              if (win.gaps.length < MAX_SAMPLES) win.gaps.push(gap);
            }
            n += 1;
          }
          win.events += ended;
          if (ended > 0) last = now;
          tail = chunk.length >= DONE_MARK.length ? chunk : Buffer.concat([tail, chunk]).subarray(-DONE_MARK.length);
        });
        res.on('end', () => {
          if (!ok) {
            finish('non2xx', `HTTP ${res.statusCode}: ${errorBody}`);
            return;
          }
          const whole = tail.length >= DONE_MARK.length && tail.subarray(tail.length - DONE_MARK.length).equals(DONE_MARK);
          if (!whole || n < minEvents) {
            finish('incomplete', `answer with ${n} events, ends ${JSON.stringify(tail.subarray(-40).toString())}`);
            return;
          }
          win.answers += 1;
          finish('ok');
        });
        finishOnResponseError(res, finish);
      });
      finishOnRequestError(req, finish, timeoutMs);
      req.end(payload);
    });

  const loop = async (i) => {
    await new Promise((resolve) => setTimeout(resolve, (i * staggerMs) / streams));
    for (let k = 0; k < MAX_ANSWERS_PER_LOOP && !stopping; k += 1) {
      // A failed answer is followed by a pause, so an unreachable target is not hammered in a tight loop.
      if (!(await one()) && !stopping) await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const loops = Promise.all(Array.from({ length: streams }, (_, i) => loop(i)));

  return {
    mark() {
      const w = win;
      win = newWindow();
      const windowS = (win.started - w.started) / 1000;
      const errors = { ...w.errors, total: w.errors.non2xx + w.errors.socket + w.errors.timeouts + w.errors.incomplete };
      const f = summarize(w.ttfb);
      const g = summarize(w.gaps);
      return {
        window_s: round(windowS, 3),
        token_events: w.tokenEvents,
        events: w.events,
        answers: w.answers,
        bytes: w.bytes,
        in_flight: inFlight,
        ttfb: { p50: f.p50, p99: f.p99, max: f.max, samples: w.ttfb.length },
        gap: { p50: g.p50, p90: g.p90, p99: g.p99, max: g.max, samples: w.gaps.length, bunched_pct: round(w.gaps.length ? (100 * w.bunched) / w.tokenEvents : null, 1) },
        errors,
        status_counts: w.statusCounts,
        ...(w.firstError ? { first_error: w.firstError } : {}),
      };
    },
    async stop() {
      stopping = true;
      agent.destroy();
      await loops;
    },
  };
}

/** A streamed answer's failures, counted by kind: a broken or aborted response is a socket error. */
function finishOnResponseError(res, finish) {
  res.on('error', (err) => finish('socket', String(err)));
  res.on('aborted', () => finish('socket', 'response aborted'));
}

/** The keep-alive agent of `connections` sockets each node:http load sends over (a caller's, to keep them across loads). */
export function keepAgent(connections) {
  return new Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
}

/**
 * One POST of `payload` over `agent`. `onResponse(res, finish)` reads the answer and calls `finish('ok')` or
 * `finish(kind, detail)`; a socket error or no answer within `timeoutMs` finishes it too. Resolves to the first
 * `[kind, detail]`.
 */
function requestOnce({ url, agent, headers, payload, timeoutMs }, onResponse) {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (kind, detail) => {
      if (settled) return;
      settled = true;
      resolve([kind, detail]);
    };
    const req = request(url, { method: 'POST', agent, headers }, (res) => {
      onResponse(res, finish);
      finishOnResponseError(res, finish);
    });
    finishOnRequestError(req, finish, timeoutMs);
    req.end(payload);
  });
}

/** A request's failures: no answer within `timeoutMs` (the request is then destroyed), or a socket error. */
function finishOnRequestError(req, finish, timeoutMs) {
  req.setTimeout(timeoutMs, () => {
    finish('timeouts', `no answer within ${timeoutMs} ms`);
    req.destroy(new Error('timeout'));
  });
  req.on('error', (err) => finish('socket', String(err)));
}
