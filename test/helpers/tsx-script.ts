/**
 * What a fresh Node process loads: an ES module script run under tsx (the sources as they are, no dist/),
 * for tests of which modules a command pulls in, since the test's own process has loaded them all.
 */
import { spawn } from 'node:child_process';
import { expect } from 'vitest';

/** The project's root, where the scripts run and against which they name the sources. */
export const PROJECT_ROOT = new URL('../../', import.meta.url).pathname;

/** Runs `script` under tsx in a fresh Node process, which must exit 0; resolves to its stdout, trimmed. */
export async function runTsxScript(script: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  expect(code, err).toBe(0);
  return out.trim();
}

/** How many modules of the npm package `name` a fresh process has loaded once `body` (module code) has run. */
export async function packageModulesLoadedAfter(body: string, name: string): Promise<number> {
  const script = `import { createRequire } from 'node:module';
${body}
const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes(${JSON.stringify(`/node_modules/${name}/`)}));
process.stdout.write(String(loaded.length));`;
  return Number(await runTsxScript(script));
}
