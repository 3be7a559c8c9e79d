/**
 * The gateway's default log destination: the lines of a linger leave together, in order, after it (or at once
 * past a size); a process that exits while lines wait still writes them; a logger that names its own
 * destination keeps it.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { buildApp } from '../../server/app.js';
import { parseConfigText } from '../../server/config/load.js';
import { createBatchedLogDestination, defaultLogDestination } from '../../server/batched-log-destination.js';
import { jsonLines } from '../helpers/log-lines.js';
import { tempDir } from '../helpers/temp-dir.js';
import { PROJECT_ROOT } from '../helpers/tsx-script.js';

const CONFIG = `
identity:
  issuer: https://idp.example.com
  audience: sluice
  cli_client_id: sluice-cli
`;

/** A script that builds the gateway with `logger` in a fresh process, answers one request and logs `last`. */
function gatewayScript(logger: string, dir: string): string {
  return `
const { buildApp } = await import(${JSON.stringify(join(PROJECT_ROOT, 'server/app.ts'))});
const { parseConfigText } = await import(${JSON.stringify(join(PROJECT_ROOT, 'server/config/load.ts'))});
const config = parseConfigText(${JSON.stringify(`${CONFIG}storage:\n  dir: ${join(dir, 'data')}\n`)});
const app = await buildApp({ config, logger: ${logger} });
const answer = await app.inject({ method: 'GET', url: '/healthz' });
app.log.info({ status: answer.statusCode }, 'last');
`;
}

/**
 * The gateway script with its stdout a regular file, as a service manager or `> gateway.log` gives it; then
 * `end`: `process.exit(0)` in that same turn, or `await app.close()` and the process ends when nothing is left.
 */
async function exitingGateway(logger: string, dir: string, end = 'process.exit(0);'): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const out = join(dir, 'stdout.log');
  const fd = openSync(out, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', gatewayScript(logger, dir) + end], { cwd: PROJECT_ROOT, stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  return { code, stdout: readFileSync(out, 'utf8'), stderr };
}

/** A fresh file opened for appending, closed when the test ends. */
async function logFile(): Promise<{ file: string; fd: number }> {
  const file = join(await tempDir('sluice-log-'), 'log');
  const fd = openSync(file, 'a');
  onTestFinished(() => closeSync(fd));
  return { file, fd };
}

describe('the batched log destination', () => {
  it('writes the lines of one linger together, in order, once it is over', async () => {
    const { file, fd } = await logFile();
    const log = createBatchedLogDestination({ fd, lingerMs: 40 });
    // One `exit` listener while lines wait, none once they are written: a linger must not leave one behind.
    const listeners = process.listenerCount('exit');

    for (const n of [1, 2, 3]) log.write(`{"n":${n}}\n`);
    expect(process.listenerCount('exit')).toBe(listeners + 1);
    // Nothing leaves while the linger runs, not even after a turn: one write at its end carries them all.
    await nextTurn();
    expect(readFileSync(file, 'utf8')).toBe('');
    await sleep(80);
    expect(readFileSync(file, 'utf8')).toBe('{"n":1}\n{"n":2}\n{"n":3}\n');
    expect(process.listenerCount('exit')).toBe(listeners);

    log.write('{"n":4}\n');
    log.write('{"n":5}\n');
    expect(readFileSync(file, 'utf8')).toBe('{"n":1}\n{"n":2}\n{"n":3}\n');
    // A shutdown writes what is pending without waiting for the linger.
    log.flushSync();
    expect(readFileSync(file, 'utf8')).toBe('{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n{"n":5}\n');
    expect(process.listenerCount('exit')).toBe(listeners);
    await sleep(80);
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean)).toHaveLength(5);
  });

  it('writes at once what passes the size it may hold, and once a turn with no linger', async () => {
    const { file, fd } = await logFile();
    const listeners = process.listenerCount('exit');
    const held = createBatchedLogDestination({ fd, lingerMs: 60_000, maxPending: 20 });
    held.write('{"n":1}\n');
    expect(readFileSync(file, 'utf8')).toBe('');
    // 8 then 23 characters: the second line takes the pending lines past 20, and both leave in that call.
    held.write('{"n":2,"x":"abcdefgh"}\n');
    expect(readFileSync(file, 'utf8')).toBe('{"n":1}\n{"n":2,"x":"abcdefgh"}\n');
    expect(process.listenerCount('exit')).toBe(listeners);

    const turn = createBatchedLogDestination({ fd, lingerMs: 0 });
    turn.write('{"n":3}\n');
    expect(readFileSync(file, 'utf8')).not.toContain('"n":3');
    await nextTurn();
    expect(readFileSync(file, 'utf8')).toContain('{"n":3}\n');
  });

  it('writes a warning or worse at once, with the lines that waited before it', async () => {
    const { file, fd } = await logFile();
    const log = createBatchedLogDestination({ fd, lingerMs: 60_000 });
    log.write('{"level":30,"msg":"info"}\n');
    log.write('{"level":20,"msg":"debug"}\n');
    expect(readFileSync(file, 'utf8')).toBe('');
    log.write('{"level":40,"msg":"warn"}\n');
    expect(jsonLines(readFileSync(file, 'utf8')).map((l) => l.msg)).toEqual(['info', 'debug', 'warn']);
    log.write('{"level":30,"msg":"held"}\n');
    log.write('{"level":50,"msg":"error"}\n');
    log.write('{"level":60,"msg":"fatal"}\n');
    expect(jsonLines(readFileSync(file, 'utf8')).map((l) => l.msg)).toEqual(['info', 'debug', 'warn', 'held', 'error', 'fatal']);
    // A line without pino's numeric level first waits like any other.
    log.write('{"msg":"no level","level":50}\n');
    expect(readFileSync(file, 'utf8')).not.toContain('no level');
    log.flushSync();
  });

  it('never keeps a process alive for its linger: lines waiting when the loop empties are written as it exits', async () => {
    const dir = await tempDir('sluice-log-');
    const out = join(dir, 'stdout.log');
    const fd = openSync(out, 'a');
    const script = `
const { createBatchedLogDestination } = await import(${JSON.stringify(join(PROJECT_ROOT, 'server/batched-log-destination.ts'))});
createBatchedLogDestination({ fd: 1, lingerMs: 600_000 }).write('{"level":30,"msg":"waiting"}\\n');
`;
    const started = performance.now();
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: PROJECT_ROOT, stdio: ['ignore', fd, 'pipe'] });
    closeSync(fd);
    onTestFinished(() => void child.kill('SIGKILL'));
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code, stderr).toBe(0);
    // Far less than the ten-minute linger (a start under tsx takes a second or two): the timer held nothing up.
    expect(performance.now() - started).toBeLessThan(20_000);
    expect(jsonLines(readFileSync(out, 'utf8')).map((l) => l.msg)).toEqual(['waiting']);
  });

  it('loses no line when the process exits in the turn that logged it', async () => {
    const dir = await tempDir('sluice-log-');
    const { code, stdout, stderr } = await exitingGateway(`{ level: 'info' }`, dir);
    expect(code, stderr).toBe(0);
    const lines = jsonLines(stdout);
    expect(lines.map((l) => l.msg)).toEqual(['request completed', 'last']);
    expect(lines[0]).toMatchObject({ req: { url: '/healthz' }, res: { statusCode: 200 } });
    expect(lines[1]).toMatchObject({ status: 200 });
  });

  it('writes the lines of a gateway whose process ends on its own', async () => {
    const dir = await tempDir('sluice-log-');
    const { code, stdout, stderr } = await exitingGateway(`{ level: 'info' }`, dir, 'await app.close();');
    expect(code, stderr).toBe(0);
    expect(jsonLines(stdout).map((l) => l.msg)).toEqual(['request completed', 'last']);
  });

  it('leaves a file the logger names to pino: the lines go there, not to stdout', async () => {
    const dir = await tempDir('sluice-log-');
    const file = join(dir, 'gateway.log');
    // pino opens a named file asynchronously, so this process ends on its own rather than mid-turn.
    const { code, stdout, stderr } = await exitingGateway(`{ level: 'info', file: ${JSON.stringify(file)} }`, dir, 'await app.close();');
    expect(code, stderr).toBe(0);
    expect(stdout).toBe('');
    expect(jsonLines(readFileSync(file, 'utf8')).map((l) => l.msg)).toEqual(['request completed', 'last']);
  });

  it('leaves a stream the logger names to pino: every line reaches it as pino writes it', async () => {
    const dir = await tempDir('sluice-log-');
    const lines: string[] = [];
    const app = await buildApp({
      config: parseConfigText(`${CONFIG}storage:\n  dir: ${join(dir, 'data')}\n`),
      logger: { level: 'info', stream: { write: (line: string) => void lines.push(line) } },
    });
    onTestFinished(() => app.close());
    await app.inject({ method: 'GET', url: '/healthz' });
    app.log.info('next');
    // Synchronously, a line a call: the caller's stream is not batched behind the turn.
    expect(jsonLines(lines.join('')).map((l) => l.msg)).toEqual(['request completed', 'next']);
    expect(lines).toHaveLength(2);
  });

  it('stands aside for a logger with its own destination or a replaced stdout', () => {
    expect(defaultLogDestination({ stream: { write() {} } })).toBeUndefined();
    expect(defaultLogDestination({ file: '/dev/null' })).toBeUndefined();
    expect(defaultLogDestination({ transport: { target: 'pino/file' } })).toBeUndefined();
    const original = process.stdout.write;
    process.stdout.write = ((chunk: string) => original.call(process.stdout, chunk)) as typeof process.stdout.write;
    try {
      expect(defaultLogDestination({})).toBeUndefined();
    } finally {
      process.stdout.write = original;
    }
  });

  it('leaves a stdout pipe to pino: a reader that stops reading does not stop the gateway', async () => {
    const dir = await tempDir('sluice-log-');
    // About 1 MB of lines, far past what the pipe and this side's buffer hold while nobody reads, then a 10 ms
    // timer: with synchronous writes to the full pipe the timer would wait for the reader, which waits for it.
    const script = `${gatewayScript(`{ level: 'info' }`, dir)}
for (let i = 0; i < 5000; i++) app.log.info({ filler: 'x'.repeat(150) }, 'line ' + i);
const before = performance.now();
await new Promise((r) => setTimeout(r, 10));
process.stderr.write('lag ' + Math.round(performance.now() - before) + '\\n');
`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    onTestFinished(() => void child.kill('SIGKILL'));
    child.stdout.pause();
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    while (!/lag \d+/.test(stderr)) await once(child.stderr, 'data');
    expect(Number(/lag (\d+)/.exec(stderr)![1])).toBeLessThan(1000);
    // Read again: every line arrives, and the process ends on its own.
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stdout.resume();
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code, stderr).toBe(0);
    const messages = jsonLines(stdout).map((l) => l.msg);
    expect(messages).toHaveLength(5002);
    expect(messages.at(-1)).toBe('line 4999');
  });
});
