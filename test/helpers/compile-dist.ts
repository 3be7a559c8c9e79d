/**
 * Global setup of the projects whose files spawn bin/sluice.js (e2e, load): compiles dist/, which the binary
 * loads, as `npm run build` does, so the binary runs the sources as they are now. A compile error fails
 * the run, as it fails the build. The unit and integration projects import the sources and never wait for it.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * vitest loads each project's global setup as a module of its own, so a module-level promise would not be
 * shared: the one compile of a run is kept on the process instead.
 */
const COMPILE = Symbol.for('sluice.test.compile-dist');

async function compile(): Promise<void> {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  try {
    await promisify(execFile)(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`tsc -p tsconfig.build.json failed; the tests would run a stale dist/:\n${stdout}${stderr}`);
  }
}

export default function setup(): Promise<void> {
  const run = globalThis as { [COMPILE]?: Promise<void> };
  run[COMPILE] ??= compile();
  return run[COMPILE];
}
