/**
 * `sluice serve --workers N`: the primary process forks N node:cluster workers that share the listen port,
 * each a full gateway whose worker number is its index (so replica ids differ: `host/0`, `host/1`). The
 * primary serves no exchange itself (only, with `metrics_listen`, every worker's metrics summed): it restarts a
 * worker that dies, passes SIGHUP on to every worker, and on SIGTERM or SIGINT passes SIGTERM to every worker
 * so each drains (graceful-drain.ts) and waits for them all.
 */
import cluster, { type Worker } from 'node:cluster';

/** The environment variable that tells a forked worker its number. */
export const WORKER_ENV = 'SLUICE_WORKER';

export interface WorkerPoolOptions {
  readonly count: number;
  /** Where the primary says what it does (one line each). */
  readonly log: (message: string) => void;
  /** Wait before a dead worker is forked again, so one that dies at start does not spin a core; default 1000 ms. */
  readonly restartDelayMs?: number;
  /**
   * A worker that dies within this long of its start doubles the next wait (up to `maxRestartDelayMs`): one
   * that cannot start (its port taken, its database gone) is retried ever more slowly, not every second.
   * One that ran longer starts again after `restartDelayMs`. Default 30 s.
   */
  readonly stableAfterMs?: number;
  /** The longest wait between restarts of a worker that keeps dying at start; default 60 s. */
  readonly maxRestartDelayMs?: number;
  /** Resolves with the signal that asks the pool to stop. */
  readonly stopped: Promise<NodeJS.Signals>;
}

/** Defaults of the options above, in one place. */
export const WORKER_POOL_DEFAULTS = Object.freeze({ restartDelayMs: 1000, stableAfterMs: 30_000, maxRestartDelayMs: 60_000 });

/** This process's worker number when it is a worker of `serve --workers`; undefined in a primary or a single process. */
export function workerNumber(env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(env[WORKER_ENV]);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/**
 * Called by a worker once it has drained: its IPC channel to the primary would keep it alive forever, so it
 * is closed, and the worker exits as a single process does when nothing is left to do.
 */
export function leaveWorkerPool(): void {
  if (cluster.isWorker) cluster.worker?.disconnect();
}

/** How long a worker whose start failed may take to exit on its own before it is ended; see `leaveAfterFailedStart`. */
export const FAILED_START_EXIT_MS = 5000;

/**
 * Called by a worker whose gateway could not start (its error is reported by the caller, and sets the exit
 * code). Its IPC channel would keep it alive, the primary would never see it exit, and the pool would run one
 * worker short, silently: so the channel is closed. Should a handle the half-started gateway left open still
 * hold the process, it is ended after `exitAfterMs` with its exit code (non-zero), so the primary restarts it.
 */
export function leaveAfterFailedStart(exitAfterMs: number = FAILED_START_EXIT_MS): void {
  if (!cluster.isWorker) return;
  cluster.worker?.disconnect();
  setTimeout(() => process.exit(process.exitCode === undefined || process.exitCode === 0 ? 1 : process.exitCode), exitAfterMs).unref();
}

/**
 * The wait before a dead worker's restart, and the wait after the one that follows if it dies early again: a
 * worker that lived `stableAfterMs` or longer waits `restartDelayMs`; one that died sooner waits what its last
 * early death left (`previous`), doubled each time up to `maxRestartDelayMs`.
 */
export function restartBackoff(
  livedMs: number,
  previous: number | undefined,
  options: { restartDelayMs: number; stableAfterMs: number; maxRestartDelayMs: number },
): { delay: number; next: number } {
  const delay = livedMs < options.stableAfterMs ? (previous ?? options.restartDelayMs) : options.restartDelayMs;
  return { delay, next: Math.min(delay * 2, options.maxRestartDelayMs) };
}

/**
 * Runs the pool until `stopped` resolves and every worker has exited. Resolves to the exit code: 0 when
 * every worker stopped cleanly, 1 otherwise.
 */
export async function runWorkerPool(options: WorkerPoolOptions): Promise<number> {
  const restartDelayMs = options.restartDelayMs ?? WORKER_POOL_DEFAULTS.restartDelayMs;
  const stableAfterMs = options.stableAfterMs ?? WORKER_POOL_DEFAULTS.stableAfterMs;
  const maxRestartDelayMs = options.maxRestartDelayMs ?? WORKER_POOL_DEFAULTS.maxRestartDelayMs;
  /** The wait before each worker's next restart, by worker number. */
  const nextDelay = new Map<number, number>();
  const running = new Map<number, Worker>();
  /** Workers whose gateway listens, and so handles SIGHUP. */
  const listening = new Set<Worker>();
  let stopping = false;
  let failed = false;
  let allExited: (() => void) | undefined;
  const restarts = new Set<NodeJS.Timeout>();

  const fork = (index: number): void => {
    const worker = cluster.fork({ [WORKER_ENV]: String(index) });
    const startedAt = Date.now();
    running.set(index, worker);
    worker.once('listening', () => listening.add(worker));
    worker.on('exit', (code, signal) => {
      running.delete(index);
      listening.delete(worker);
      if (stopping) {
        if (code !== 0) failed = true;
        if (running.size === 0) allExited?.();
        return;
      }
      const { delay, next } = restartBackoff(Date.now() - startedAt, nextDelay.get(index), { restartDelayMs, stableAfterMs, maxRestartDelayMs });
      nextDelay.set(index, next);
      options.log(`worker ${index} (pid ${worker.process.pid}) exited (${signal ?? `code ${code}`}); starting it again in ${delay} ms`);
      const timer = setTimeout(() => {
        restarts.delete(timer);
        if (!stopping) fork(index);
      }, delay);
      restarts.add(timer);
    });
  };

  // SIGHUP reaches the primary (a supervisor signals the pid it started), which reloads nothing itself: each
  // worker re-reads the file, so the pool runs one configuration, and each audits its own reload.
  // Kept while draining too (doing nothing then): without a handler SIGHUP would end the primary mid-drain.
  const hangup = (): void => {
    if (stopping) return;
    // Only workers that listen: one still starting has no handler yet, and SIGHUP would end it.
    const ready = [...running.values()].filter((worker) => listening.has(worker));
    options.log(`SIGHUP: ${ready.length} workers re-read the configuration`);
    for (const worker of ready) worker.process.kill('SIGHUP');
  };
  process.on('SIGHUP', hangup);
  options.log(`starting ${options.count} workers`);
  for (let i = 0; i < options.count; i++) fork(i);
  const signal = await options.stopped;
  stopping = true;
  for (const timer of restarts) clearTimeout(timer);
  options.log(`${signal}: draining ${running.size} workers`);
  const done = new Promise<void>((resolve) => {
    allExited = resolve;
  });
  const waiting = running.size > 0;
  for (const worker of running.values()) worker.process.kill('SIGTERM');
  if (waiting) await done;
  process.off('SIGHUP', hangup);
  return failed ? 1 : 0;
}
