// Child-process bookkeeping for the bench: fork with IPC, wait for a message with a deadline, stop
// everything on exit (also on failure or a signal), and read per-process CPU time from /proc.
import { execFileSync, fork } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';

/** @typedef {{ name: string, child: import('node:child_process').ChildProcess, extraPids: Set<number>, exited: boolean }} Managed */

/** @type {Set<Managed>} */
const managed = new Set();

/**
 * A loopback port free a moment ago, for a listener whose address a child does not report back over IPC
 * (a metrics or gRPC listener, a gateway's own port).
 */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A number from the environment, checked against [min, max]; `fallback` when unset. */
export function envNumber(name, fallback, { min = 0, max = Infinity } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) throw new Error(`${name} must be a number in [${min}, ${max}], got ${raw}`);
  return value;
}

/**
 * The child side of a gateway under test: waits (10 s at most) for its config over IPC, calls
 * `start(config)` (which resolves to `{ url, close }`), reports `ready` or `error`, and exits through
 * `close` on "shutdown", a lost parent or a signal — process.exit() is when --cpu-prof writes its profile.
 */
export async function serveFromParent(start) {
  let running;
  let closing = false;
  const shutdown = async (code) => {
    if (closing) return;
    closing = true;
    setTimeout(() => process.exit(code), 3000).unref();
    await running?.close().catch(() => undefined);
    process.exit(code);
  };
  const configMessage = new Promise((resolve) => {
    process.on('message', (msg) => {
      if (msg?.type === 'shutdown') void shutdown(0);
      if (msg?.type === 'config') resolve(msg.config);
    });
  });
  process.on('disconnect', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  process.on('SIGINT', () => void shutdown(0));
  try {
    const config = await Promise.race([
      configMessage,
      new Promise((_, reject) => setTimeout(() => reject(new Error('no config from the bench within 10 s')), 10_000).unref()),
    ]);
    running = await start(config);
    process.send?.({ type: 'ready', url: running.url });
  } catch (err) {
    process.send?.({ type: 'error', message: String(err?.stack ?? err) });
    await shutdown(1);
  }
}

/** Polls `url` until it answers 200 (a gateway's /readyz once its store and recorder are up); throws after `attempts`. */
export async function waitForHttpOk(url, { attempts = 50, intervalMs = 200 } = {}) {
  let last;
  for (let i = 0; i < attempts; i += 1) {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
    if (res?.status === 200) return;
    last = res?.status;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`${url} never answered 200 (last: ${last ?? 'no answer'})`);
}

export function log(message) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/**
 * Forks `modulePath` with an IPC channel. stdout and stderr go to `logFile` (appended) when given,
 * else to /dev/null, so a chatty child never blocks on a full pipe and never writes to our stdout.
 */
export function forkChild(name, modulePath, args = [], { logFile, execArgv = [], env = process.env } = {}) {
  const out = logFile ? openSync(logFile, 'a') : 'ignore';
  const child = fork(modulePath, args, { stdio: ['ignore', out, out, 'ipc'], execArgv, env });
  if (typeof out === 'number') closeSync(out); // the child has its own copy
  const entry = { name, child, extraPids: new Set(), exited: false };
  managed.add(entry);
  child.on('exit', () => {
    entry.exited = true;
  });
  return entry;
}

/** Resolves with the first IPC message that `match` accepts; rejects on timeout or if the child exits first. */
export function waitForMessage(entry, match, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const { child } = entry;
    const done = (fn, value) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      fn(value);
    };
    const onMessage = (msg) => {
      try {
        if (match(msg)) done(resolve, msg);
      } catch (err) {
        done(reject, err);
      }
    };
    const onExit = (code, signal) =>
      done(reject, new Error(`${entry.name} exited (code ${code}, signal ${signal}) while waiting for ${what}`));
    const timer = setTimeout(() => done(reject, new Error(`${entry.name}: no ${what} within ${timeoutMs} ms`)), timeoutMs);
    child.on('message', onMessage);
    child.once('exit', onExit);
    if (entry.exited) onExit(child.exitCode, child.signalCode);
  });
}

/** Asks a child to shut down; SIGKILLs it (and the pids it reported) after `graceMs`. */
export async function stopChild(entry, graceMs = 4000) {
  if (!managed.has(entry)) return;
  const { child } = entry;
  if (!entry.exited) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      if (child.connected) child.send({ type: 'shutdown' });
      else child.kill('SIGTERM');
    } catch {
      child.kill('SIGTERM');
    }
    let timer;
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const outcome = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      log(`${entry.name} did not stop within ${graceMs} ms: SIGKILL`);
      killHard(entry);
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 1000))]);
    }
  }
  for (const pid of entry.extraPids) {
    if (isAlive(pid)) safeKill(pid, 'SIGKILL');
  }
  managed.delete(entry);
}

/**
 * Waits for a child's `ready` message; an `error` message first fails the run with `${name} failed to start`.
 * Resolves with the ready message.
 */
export function waitForReady(entry, name, timeoutMs) {
  return waitForMessage(
    entry,
    (m) => {
      if (m?.type === 'error') throw new Error(`${name} failed to start: ${m.message}`);
      return m?.type === 'ready';
    },
    timeoutMs,
    `${name} ready`,
  );
}

/**
 * Guards a run: every child is killed when the process exits, SIGINT or SIGTERM stops them and exits 130,
 * and a run still going after `maxSeconds` gives up with exit 1, keeping its work dir for the logs. The
 * work dir, once the run sets `scratch.dir`, is removed on exit unless `scratch.keep` is set.
 */
export function guardRun(maxSeconds) {
  const scratch = { dir: undefined, keep: false };
  process.on('exit', () => {
    killAllHard();
    if (scratch.dir && !scratch.keep) rmSync(scratch.dir, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => void stopAll().finally(() => process.exit(130)));
  setTimeout(() => {
    log(`still running after ${maxSeconds}s (BENCH_MAX_SECONDS): giving up`);
    scratch.keep = true;
    void stopAll().finally(() => process.exit(1));
  }, maxSeconds * 1000).unref();
  return scratch;
}

/**
 * Runs the bench's `main` and exits with what it returns (0 when it returns nothing). A failure is logged
 * and keeps the work dir for its logs; either way every child is stopped, then `cleanup` runs (closing the
 * IdP, say; its own failure is ignored). Never returns.
 */
export async function runMain(main, scratch, cleanup) {
  let code = 1;
  try {
    code = (await main()) ?? 0;
  } catch (err) {
    log(`failed: ${err?.stack ?? err}`);
    if (scratch.dir) log(`logs in ${scratch.dir} (kept)`);
    scratch.keep = true;
  } finally {
    await stopAll();
    await Promise.resolve()
      .then(cleanup)
      .catch(() => undefined);
  }
  process.exit(code);
}

export async function stopAll() {
  await Promise.allSettled([...managed].map((entry) => stopChild(entry)));
}

/** Last resort, synchronous (for process 'exit'): SIGKILL whatever is still running. */
export function killAllHard() {
  for (const entry of managed) killHard(entry);
}

function killHard(entry) {
  for (const pid of entry.extraPids) safeKill(pid, 'SIGKILL');
  if (!entry.exited) entry.child.kill('SIGKILL');
}

function safeKill(pid, signal) {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let clockTicks;
function ticksPerSecond() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 2000 }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU time (user + system) of a process in microseconds, from /proc; undefined if it cannot be read. */
export function cpuMicros(pid) {
  if (pid === process.pid) {
    const { user, system } = process.cpuUsage();
    return user + system;
  }
  return statCpuMicros(`/proc/${pid}/stat`);
}

/** User + system CPU microseconds in a `/proc` stat file (a process's or one thread's); undefined once it is gone. */
function statCpuMicros(path) {
  try {
    const stat = readFileSync(path, 'utf8');
    // Fields after the command name (which may contain spaces) start at field 3; utime/stime are 14/15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1e6) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/**
 * CPU microseconds (user + system) of `pid`'s main thread only: for Node, its event loop, where the data path
 * runs; the rest of the process's time is V8's helper threads (collection) and libuv's pool (file I/O).
 */
export function mainThreadCpuMicros(pid) {
  return statCpuMicros(`/proc/${pid}/task/${pid}/stat`);
}

/**
 * Snapshot of CPU time for named pids (`read`: a whole process's by default, or `mainThreadCpuMicros`);
 * `cpuDelta(a, b)` turns two snapshots into microseconds per name.
 */
export function cpuSnapshot(pids, read = cpuMicros) {
  const snap = {};
  for (const [name, pid] of Object.entries(pids)) if (pid !== undefined) snap[name] = read(pid);
  return snap;
}

export function cpuDelta(before, after) {
  const out = {};
  for (const name of Object.keys(after)) {
    if (before[name] !== undefined && after[name] !== undefined) out[name] = after[name] - before[name];
  }
  return out;
}

/** `root` and every process below it (PostgreSQL backends, `serve --workers` workers, a guarded CLI), from /proc. */
export function processTree(root) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  const pids = [];
  const queue = [root];
  while (queue.length > 0 && pids.length < 10_000) {
    const pid = queue.shift();
    pids.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return pids;
}

/**
 * CPU snapshot of named process trees (this process counts alone: its children are named on their own);
 * `groupDelta(snapshot)` gives microseconds per name since. Pids that come or go meanwhile are left out.
 */
export function groupSnapshot(roots) {
  const flat = {};
  for (const [group, root] of Object.entries(roots)) for (const pid of root === process.pid ? [root] : processTree(root)) flat[`${group}/${pid}`] = pid;
  return { flat, at: cpuSnapshot(flat) };
}

export function groupDelta(before) {
  const delta = cpuDelta(before.at, cpuSnapshot(before.flat));
  const out = {};
  for (const [key, us] of Object.entries(delta)) {
    const group = key.slice(0, key.indexOf('/'));
    out[group] = (out[group] ?? 0) + us;
  }
  return out;
}

/** Busy CPU time of the whole machine (all cores, all processes) in microseconds, from /proc/stat. */
export function machineBusyMicros() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const [, ...fields] = line.trim().split(/\s+/);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.map(Number);
    const busy = user + nice + system + irq + softirq + (steal || 0);
    void idle;
    void iowait;
    return (busy * 1e6) / ticksPerSecond();
  } catch {
    return undefined;
  }
}
