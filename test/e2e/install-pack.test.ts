import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startTestIdp } from '../helpers/oidc.js';

/*
 * The README's install route, followed as a user would: pack the checkout, install the tarball globally
 * (here under a private prefix), then run the installed `sluice`. Installing compiles better-sqlite3
 * from source wherever its prebuilt binary cannot be downloaded — about a minute on two cores — so this
 * file is left out of `npm test` and runs from `.ci/run` (`npm run test:install`) on each Node major.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const INSTALL_BUDGET_MS = 600_000;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of every child: this test's Node first on PATH, so `#!/usr/bin/env node` finds it. */
function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`, NO_COLOR: '1', CI: 'true', ...extra };
}

function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: childEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${options.timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Start the installed gateway and resolve with its URL once it logs that it is ready. */
function serve(bin: string, config: string, env: NodeJS.ProcessEnv): Promise<{ url: string; stop(): Promise<number | null> }> {
  const child = spawn(bin, ['serve', '--config', config], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let logs = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the installed gateway did not get ready:\n${logs}`)), 60_000);
    const onData = (d: Buffer): void => {
      logs += d.toString();
      // Only whole lines: a chunk may end inside one.
      for (const line of logs.split('\n').slice(0, -1)) {
        if (!line.includes('sluice gateway ready')) continue;
        clearTimeout(timer);
        const url = (JSON.parse(line) as { url: string }).url;
        resolve({
          url,
          stop: async () => {
            child.kill('SIGTERM');
            return exited;
          },
        });
        return;
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => reject(new Error(`the installed gateway exited (${code}) before it was ready:\n${logs}`)));
  });
}

describe('installing from the packed tarball (README: Deployment)', () => {
  it(
    'packs, installs globally under a prefix, and the installed sluice checks a config, serves and logs in',
    async () => {
      const work = await mkdtemp(join(tmpdir(), 'sluice-install-'));
      onTestFinished(() => rm(work, { recursive: true, force: true }));
      const prefix = join(work, 'prefix');
      const version = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

      // `dist/` is compiled by the script that runs this file, so packing skips the `prepare` rebuild.
      const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT });
      expect(pack.code, pack.stderr).toBe(0);
      const [packed] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
      expect(packed!.filename).toBe(`sluice-${version}.tgz`);
      const shipped = packed!.files.map((f) => f.path);
      expect(shipped).toContain('bin/sluice.js');
      expect(shipped).toContain('dist/cli/main.js');
      expect(shipped).toEqual(expect.arrayContaining(['deploy/sluice.yaml', 'deploy/sluice.service']));
      expect(shipped.filter((p) => /^(test|bench|cli|server|shared)\//.test(p) || p.endsWith('.ts'))).toEqual([]);

      // Packages the CI run already fetched come from npm's cache; better-sqlite3 still builds here.
      const install = await run(
        'npm',
        ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(work, packed!.filename)],
        { cwd: work, timeoutMs: INSTALL_BUDGET_MS },
      );
      expect(install.code, `${install.stdout}\n${install.stderr}`).toBe(0);
      const sluice = join(prefix, 'bin', 'sluice');

      const versionRun = await run(sluice, ['--version'], { cwd: work });
      expect(versionRun.code, versionRun.stderr).toBe(0);
      expect(versionRun.stdout.trim()).toBe(version);

      const idp = await startTestIdp();
      onTestFinished(() => idp.close());
      const masterKey = (await run('openssl', ['rand', '-base64', '32'])).stdout.trim();
      const config = join(work, 'sluice.yaml');
      await writeFile(
        config,
        [
          'listen: 127.0.0.1:0',
          'identity:',
          `  issuer: ${idp.issuer}`,
          `  audience: ${idp.audience}`,
          `  cli_client_id: ${idp.cliClientId}`,
          'storage:',
          `  dir: ${join(work, 'data')}`,
          '  master_key: ${env:SLUICE_MASTER_KEY}',
          'connections:',
          '  - name: llm',
          '    type: http',
          '    upstream: http://127.0.0.1:9',
          '    allow_groups: [ml-eng]',
          '',
        ].join('\n'),
      );
      const env = { SLUICE_MASTER_KEY: masterKey };

      const check = await run(sluice, ['serve', '--config', config, '--check'], { cwd: work, env });
      expect(check.code, check.stderr).toBe(0);
      expect(check.stdout).toBe(`${config}: valid (1 connection)\n`);

      // The example the package ships for a deployment is a valid configuration as it stands.
      const example = join(prefix, 'lib', 'node_modules', 'sluice', 'deploy', 'sluice.yaml');
      const exampleCheck = await run(sluice, ['serve', '--config', example, '--check'], { cwd: work, env: { ...env, VLLM_API_KEY: 'sk-example' } });
      expect(exampleCheck.code, exampleCheck.stderr).toBe(0);
      expect(exampleCheck.stdout).toBe(`${example}: valid (1 connection)\n`);

      // Starting opens the SQLite index (the native addon the install built) and the recording.
      const gateway = await serve(sluice, config, env);
      const ready = await fetch(`${gateway.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', checks: { identity: { ok: true }, recording: { ok: true } } });

      const cliEnv = {
        XDG_CONFIG_HOME: join(work, 'config'),
        SLUICE_TOKEN_STORE: 'file',
        SLUICE_CLIENT_ID: idp.ciClient.clientId,
        SLUICE_CLIENT_SECRET: idp.ciSecret,
      };
      const login = await run(sluice, ['login', '--client-credentials', '--gateway', gateway.url], { cwd: work, env: cliEnv });
      expect(login.code, login.stderr).toBe(0);
      const connections = await run(sluice, ['connections', '--json'], { cwd: work, env: cliEnv });
      expect(connections.code, connections.stderr).toBe(0);
      expect((JSON.parse(connections.stdout) as { connections: { name: string }[] }).connections.map((c) => c.name)).toEqual(['llm']);

      expect(await gateway.stop()).toBe(0);
    },
    INSTALL_BUDGET_MS + 120_000,
  );
});
