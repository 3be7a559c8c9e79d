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

describe('the turn log destination', () => {
  it('writes the lines of one linger together, in order, once it is over', async () => {
    const dir = await tempDir('sluice-log-');
    const file = join(dir, 'log');
    const fd = openSync(file, 'a');
    onTestFinished(() => closeSync(fd));
    const log = createBatchedLogDestination({ fd, lingerMs: 40 });

    for (const n of [1, 2, 3]) log.write(`{"n":${n}}\n`);
    // Nothing leaves while the linger runs, not even after a turn: one write at its end carries them all.
    await nextTurn();
    expect(readFileSync(file, 'utf8')).toBe('');
    await sleep(80);
    expect(readFileSync(file, 'utf8')).toBe('{"n":1}\n{"n":2}\n{"n":3}\n');

    log.write('{"n":4}\n');
    log.write('{"n":5}\n');
    expect(readFileSync(file, 'utf8')).toBe('{"n":1}\n{"n":2}\n{"n":3}\n');
    // A shutdown writes what is pending without waiting for the linger.
    log.flushSync();
    expect(readFileSync(file, 'utf8')).toBe('{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n{"n":5}\n');
    await sleep(80);
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean)).toHaveLength(5);
  });

  it('writes at once what passes the size it may hold, and once a turn with no linger', async () => {
    const dir = await tempDir('sluice-log-');
    const file = join(dir, 'log');
    const fd = openSync(file, 'a');
    onTestFinished(() => closeSync(fd));
    const held = createBatchedLogDestination({ fd, lingerMs: 60_000, maxPending: 20 });
    held.write('{"n":1}\n');
    expect(readFileSync(file, 'utf8')).toBe('');
    // 16 then 24 characters: the second line takes the pending lines past 20, and both leave in that call.
    held.write('{"n":2,"x":"abcdefgh"}\n');
    expect(readFileSync(file, 'utf8')).toBe('{"n":1}\n{"n":2,"x":"abcdefgh"}\n');

    const turn = createBatchedLogDestination({ fd, lingerMs: 0 });
    turn.write('{"n":3}\n');
    expect(readFileSync(file, 'utf8')).not.toContain('"n":3');
    await nextTurn();
    expect(readFileSync(file, 'utf8')).toContain('{"n":3}\n');
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

  it('writes waiting lines when the process ends on its own, without waiting out the linger', async () => {
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
