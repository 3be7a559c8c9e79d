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

export interface TurnLogDestinationOptions {
  /** File descriptor the lines go to. Default 1 (stdout). */
  readonly fd?: number;
}

const DEFAULTS: Required<TurnLogDestinationOptions> = { fd: 1 };

/**
 * The gateway's log lines, written once per turn of the event loop: the lines of one turn are joined and
 * leave in one synchronous write when the turn's I/O callbacks have run. pino's own stdout destination
 * writes each line from the thread pool, and on the data path that costs more than the line: a thread
 * woken, a completion event and an extra loop turn for every request. Lines still pending when the process
 * exits (process.exit, an uncaught exception) are written from its `exit` event, so none is lost there.
 * Meant for a descriptor that never waits for a reader (a regular file, see `defaultLogDestination`): a
 * write to a full pipe would hold the event loop until the reader came back.
 */
export function createTurnLogDestination(options: TurnLogDestinationOptions = {}): LogDestination {
  const { fd } = { ...DEFAULTS, ...options };
  // pino's own synchronous writer: it retries partial writes and EAGAIN, and stops logging on EPIPE.
  const out = pino.destination({ dest: fd, sync: true });
  let pending = '';
  let scheduled = false;

  const flush = (): void => {
    if (scheduled) {
      scheduled = false;
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
      if (scheduled) return;
      scheduled = true;
      setImmediate(flush);
      process.once('exit', flush);
    },
    flushSync: flush,
    flush(cb) {
      flush();
      cb?.();
    },
  };
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
 * The destination of a logger configured without one (no `stream`, `file` or `transport`): stdout, a turn at a
 * time, when stdout is a regular file. Undefined — pino's own asynchronous writer stands — when the logger
 * names its own, when stdout was replaced, and when stdout is a pipe, socket or terminal: a reader that stops
 * reading (a stalled log collector, a paused pager) would otherwise stop the gateway with it.
 */
export function defaultLogDestination(logger: { stream?: unknown; file?: unknown; transport?: unknown }): LogDestination | undefined {
  if (logger.stream !== undefined || logger.file !== undefined || logger.transport !== undefined || stdoutReplaced()) return undefined;
  if (!isRegularFile(1)) return undefined;
  return createTurnLogDestination();
}
