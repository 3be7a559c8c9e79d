/**
 * `sluice serve --workers 2` on one storage directory, as an operator runs it (the real binary, a real
 * PostgreSQL): both workers start on a fresh, empty directory every time; each keeps a seal log of its own,
 * so traffic through both and a drain leave a directory `sluice audit verify` passes, and a byte flipped in
 * one worker's log fails it, naming the log; and a worker that cannot start exits, is started again by the
 * primary, and comes up once what stopped it is gone.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startModelServer } from '../../server/demo/model-server.js';
import { runCli, spawnCli, type SpawnedCli } from '../helpers/cli-process.js';
import { gatewayFixture, UPSTREAM_API_KEY } from '../helpers/gateway.js';
import { jsonLines } from '../helpers/log-lines.js';
import { freePort } from '../helpers/loopback.js';
import { completeOnNewConnection } from '../helpers/new-connection-request.js';
import { signToken } from '../helpers/oidc.js';
import { postgresFixture } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp-dir.js';

const postgres = postgresFixture();
// Only its identity provider: the gateways under test are the spawned binaries.
const gateways = gatewayFixture();
const offline: NodeJS.ProcessEnv = { SLUICE_TOKEN: '', SLUICE_GATEWAY: '', SLUICE_MASTER_KEY: '' };

/** A fresh directory holding a config for two workers on `port`, its data directory not yet created, and its master key file. */
async function workersSetup(port: number, upstream: string): Promise<{ config: string; data: string; keyFile: string }> {
  const { idp } = gateways;
  const root = await tempDir('sluice-workers-storage-');
  const masterKey = randomBytes(32).toString('base64');
  const keyFile = join(root, 'master.key');
  await writeFile(keyFile, `${masterKey}\n`, { mode: 0o600 });
  const config = join(root, 'sluice.yaml');
  await writeFile(
    config,
    `listen: 127.0.0.1:${port}\nidentity:\n  issuer: ${idp.issuer}\n  audience: ${idp.audience}\n  cli_client_id: sluice-cli\n` +
      `storage:\n  dir: ${root}/data\n  master_key: ${masterKey}\n  database: ${await postgres.database()}\n` +
      `replica:\n  id: gw\n  heartbeat_interval: 10m\n  dead_after: 30m\nshutdown_grace: 10s\n` +
      `connections:\n  - name: llm\n    type: http\n    upstream: ${upstream}\n    allow_groups: [ml-eng]\n    headers: { authorization: "Bearer ${UPSTREAM_API_KEY}" }\n`,
  );
  return { config, data: join(root, 'data'), keyFile };
}

function readyOf(child: SpawnedCli, worker: number): Record<string, unknown>[] {
  return jsonLines(child.stdout()).filter((l) => l.msg === 'sluice gateway ready' && l.worker === worker);
}

/** Waits until worker `worker` has logged 'ready' `times` times. */
async function readyTimes(child: SpawnedCli, worker: number, times: number, timeoutMs = 30_000): Promise<void> {
  await expect.poll(() => readyOf(child, worker).length, { timeout: timeoutMs, interval: 100 }).toBeGreaterThanOrEqual(times);
}

interface VerifyJson {
  ok: boolean;
  sessions: { id: string; status: string; verdict: string }[];
  seal_log: { status: string; failed: boolean; verdict: string };
}

async function verifyJson(data: string, keyFile: string): Promise<{ code: number | null; json: VerifyJson; stderr: string }> {
  const r = await runCli(['audit', 'verify', '--all', '--json', '--data-dir', data, '--key-file', keyFile], { env: offline });
  return { code: r.code, json: JSON.parse(r.stdout) as VerifyJson, stderr: r.stderr };
}

describe('sluice serve --workers 2 on one storage directory', () => {
  it('starts both workers on a fresh directory every time; each keeps its own seal log, which audit verify checks', async () => {
    const model = await startModelServer({ apiKey: UPSTREAM_API_KEY, chunks: 2, chunkDelayMs: 0 });
    onTestFinished(() => model.close());
    const token = await signToken(gateways.idp.signingKey, gateways.idp.claimsFor('alice'));

    let last: { data: string; keyFile: string } | undefined;
    for (let round = 0; round < 3; round++) {
      const port = await freePort();
      const setup = await workersSetup(port, model.url);
      const child = spawnCli(['serve', '--config', setup.config, '--workers', '2']);
      onTestFinished(() => child.kill('SIGKILL'));
      await readyTimes(child, 0, 1);
      await readyTimes(child, 1, 1);
      // Both started at once on an empty directory: neither died creating what the first start creates.
      expect(child.stderr()).not.toMatch(/exited .*starting it again/);
      expect(child.stderr()).not.toContain('EEXIST');

      if (round === 2) {
        // Fresh connections, which the primary hands to the workers in turn: both record a session (checked on disk below).
        for (let i = 0; i < 10; i++) {
          const res = await completeOnNewConnection(port, token, `exchange ${i}`);
          expect(res.status).toBe(200);
          expect(res.body).toContain(`exchange ${i}`);
        }
      }
      child.kill('SIGTERM');
      expect(await child.exited).toBe(0);
      expect(child.stderr()).toContain('SIGTERM: draining 2 workers');
      last = setup;
    }

    // The drain sealed each worker's sessions into its own log; both chains and checkpoints hold.
    const { data, keyFile } = last!;
    const files = await readdir(data);
    expect(files).toEqual(expect.arrayContaining(['seals.log', 'seals.checkpoints', 'seals.1.log', 'seals.1.checkpoints']));
    const ok = await verifyJson(data, keyFile);
    expect(ok.json.seal_log).toMatchObject({ status: 'intact', failed: false });
    expect(ok.json.seal_log.verdict).toContain('seals.1.log');
    expect(ok.json.sessions.length).toBeGreaterThanOrEqual(2);
    // The keys of these sessions are in the database, not the directory: unverifiable is not tampered with.
    for (const s of ok.json.sessions) expect(s.status).not.toBe('broken');
    expect(ok.stderr).not.toContain('ERR_RECORDING_TAMPERED');
    // Each worker's log holds seal entries of its own sessions.
    for (const file of ['seals.log', 'seals.1.log']) {
      const entries = (await readFile(join(data, file), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string });
      expect(entries.filter((e) => e.type === 'seal').length).toBeGreaterThan(0);
    }

    // A byte flipped in worker 1's log: verification fails and names that log.
    const path = join(data, 'seals.1.log');
    const bytes = await readFile(path);
    const at = bytes.indexOf('"records":') + '"records":'.length;
    bytes[at] = bytes[at] === 0x39 ? 0x38 : bytes[at]! + 1;
    await writeFile(path, bytes);
    const bad = await verifyJson(data, keyFile);
    expect(bad.code).not.toBe(0);
    expect(bad.json.seal_log).toMatchObject({ status: 'broken', failed: true });
    expect(bad.json.seal_log.verdict).toContain('seals.1.log');
    expect(bad.stderr).toContain('ERR_RECORDING_TAMPERED');
  }, 180_000);

  it('restarts a worker that cannot start, saying why, and it comes up once the cause is gone', async () => {
    const model = await startModelServer({ apiKey: UPSTREAM_API_KEY, chunks: 2, chunkDelayMs: 0 });
    onTestFinished(() => model.close());
    const port = await freePort();
    const setup = await workersSetup(port, model.url);
    // Worker 1's seal log exists but holds nothing: it refuses to start rather than chain onto it.
    const { mkdir } = await import('node:fs/promises');
    await mkdir(setup.data, { recursive: true, mode: 0o700 });
    await writeFile(join(setup.data, 'seals.1.log'), '', { mode: 0o600 });
    const child = spawnCli(['serve', '--config', setup.config, '--workers', '2']);
    onTestFinished(() => child.kill('SIGKILL'));
    await readyTimes(child, 0, 1);
    await child.waitForOutput(/worker 1 \(pid \d+\) exited \(code [1-9]\d*\); starting it again/, 30_000);
    expect(child.stderr()).toContain('ERR_RECORDING_TAMPERED');
    expect(child.stderr()).toContain('seals.1.log');
    expect(readyOf(child, 1)).toHaveLength(0);

    // The operator moves the damaged log aside: the next restart comes up.
    await rm(join(setup.data, 'seals.1.log'));
    await readyTimes(child, 1, 1, 30_000);
    child.kill('SIGTERM');
    expect(await child.exited).toBe(0);
  }, 120_000);
});
