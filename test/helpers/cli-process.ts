import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The real CLI binary, as `npx sluice` runs it. */
export const SLUICE_BIN = fileURLToPath(new URL('../../bin/sluice.js', import.meta.url));

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeoutMs?: number;
  cwd?: string;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface SpawnedCli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with all output so far once `pattern` appears in stdout or stderr. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, NO_COLOR: '1', CI: 'true', ...extra };
}

/** Start `sluice ARGS…` and collect its output as it comes. */
export function spawnCli(args: string[], options: CliOptions = {}): SpawnedCli {
  const child = spawn(process.execPath, [SLUICE_BIN, ...args], {
    env: cliEnv(options.env),
    cwd: options.cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of waiters) w();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of waiters) w();
  });
  if (options.input !== undefined) child.stdin!.end(options.input);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    waitForOutput(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(out) || pattern.test(err)) {
            cleanup();
            resolve(`${out}${err}`);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${pattern} in CLI output:\n--- stdout\n${out}\n--- stderr\n${err}`));
        }, timeoutMs);
        const onExit = () => {
          setImmediate(() => {
            if (waiters.has(check)) {
              cleanup();
              reject(new Error(`CLI exited before ${pattern} appeared:\n--- stdout\n${out}\n--- stderr\n${err}`));
            }
          });
        };
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
        };
        waiters.add(check);
        child.on('exit', onExit);
        check();
      });
    },
  };
}

/** Run `sluice ARGS…` to completion. */
export async function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const c = spawnCli(args, options);
  const timer = setTimeout(() => c.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  const code = await c.exited;
  clearTimeout(timer);
  return { code, signal: c.child.signalCode, stdout: c.stdout(), stderr: c.stderr() };
}
