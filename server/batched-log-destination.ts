import { fstatSync } from 'node:fs';
import { pino } from 'pino';

/** Where pino writes: one `write` per line, as pino calls it. */
export interface LogDestination {
  write(line: string): void;
  /** Writes what is pending now (shutdown). */
  flushSync(): void;
  /** Writes what is pending, then calls back: what pino's `logger.flush(cb)` calls. */
  flush(cb?: (err?: Error) => void): void;
}

export interface BatchedLogDestinationOptions {
  /** File descriptor the lines go to. Default 1 (stdout). */
  readonly fd?: number;
  /** How long a line waits for others before they leave together. Default 50 ms; 0 writes once per event-loop turn. */
  readonly lingerMs?: number;
  /** Pending lines past this many characters (UTF-16 units, not bytes) leave at once, whatever the linger. Default 64 Ki. */
  readonly maxPending?: number;
}

const DEFAULTS: Required<BatchedLogDestinationOptions> = { fd: 1, lingerMs: 50, maxPending: 64 * 1024 };

/**
 * The gateway's log lines, gathered and written together: the lines of `lingerMs` leave in one synchronous
 * write. pino's own stdout destination writes each line from the thread pool, and on the data path that
 * costs more than the line: a thread woken, a completion event and an extra loop turn for every request;
 * a synchronous write per request still costs about as much as the line's JSON (a system call each, at
 * one request in flight). Lines still pending when the process exits (process.exit, an uncaught exception,
 * an event loop with nothing left) are written from its `exit` event, so none is lost there, and a
 * warning, error or fatal line is written at once; a process killed outright (SIGKILL, out of memory) loses
 * at most the last `lingerMs` of info and debug lines. Meant for a descriptor that never waits for a
 * reader (a regular file, see `defaultLogDestination`): a write to a full pipe would hold the event loop
 * until the reader came back.
 */
export function createBatchedLogDestination(options: BatchedLogDestinationOptions = {}): LogDestination {
  const { fd, lingerMs, maxPending } = { ...DEFAULTS, ...options };
  // pino's own synchronous writer: it retries partial writes and EAGAIN, and stops logging on EPIPE.
  const out = pino.destination({ dest: fd, sync: true });
  let pending = '';
  let timer: NodeJS.Timeout | NodeJS.Immediate | undefined;

  const flush = (): void => {
    if (timer !== undefined) {
      if (lingerMs === 0) clearImmediate(timer as NodeJS.Immediate);
      else clearTimeout(timer as NodeJS.Timeout);
      timer = undefined;
      process.removeListener('exit', flush);
    }
    if (pending.length === 0) return;
    const lines = pending;
    pending = '';
    out.write(lines);
  };

  return {
    write(line) {
      pending += line;
      // A warning or worse leaves at once, with what waited before it: such a line is often a process's
      // last, and a kill or a crash that skips `exit` would otherwise take it along.
      if (pending.length >= maxPending || isWarningOrWorse(line)) return flush();
      if (timer !== undefined) return;
      if (lingerMs === 0) timer = setImmediate(flush);
      else {
        // Unref'd: waiting lines never keep a process alive; its `exit` event writes them.
        timer = setTimeout(flush, lingerMs);
        timer.unref();
      }
      process.once('exit', flush);
    },
    flushSync: flush,
    flush(cb) {
      flush();
      cb?.();
    },
  };
}

const LEVEL_PREFIX = '{"level":';
const WARN = pino.levels.values.warn!;

/** Whether a line pino wrote has a numeric level of a warning or worse (warn, error, fatal): `{"level":40,…`. */
function isWarningOrWorse(line: string): boolean {
  if (!line.startsWith(LEVEL_PREFIX)) return false;
  return Number(line.slice(LEVEL_PREFIX.length, line.indexOf(',', LEVEL_PREFIX.length))) >= WARN;
}

/** True when something replaced stdout's `write` (a test capturing output): pino then writes through it, and so do we. */
export function stdoutReplaced(): boolean {
  return process.stdout.write !== (process.stdout.constructor as { prototype: NodeJS.WriteStream }).prototype.write;
}

/** Whether descriptor `fd` is a regular file (not a pipe, socket or terminal). */
export function isRegularFile(fd: number): boolean {
  try {
    return fstatSync(fd).isFile();
  } catch {
    return false;
  }
}

/**
 * The destination of a logger configured without one (no `stream`, `file` or `transport`): stdout, its lines
 * gathered for 50 ms at a time, when stdout is a regular file. Undefined — pino's own asynchronous writer stands — when the logger
 * names its own, when stdout was replaced, and when stdout is a pipe, socket or terminal: a reader that stops
 * reading (a stalled log collector, a paused pager) would otherwise stop the gateway with it.
 */
export function defaultLogDestination(logger: { stream?: unknown; file?: unknown; transport?: unknown }): LogDestination | undefined {
  if (logger.stream !== undefined || logger.file !== undefined || logger.transport !== undefined || stdoutReplaced()) return undefined;
  if (!isRegularFile(1)) return undefined;
  return createBatchedLogDestination();
}
