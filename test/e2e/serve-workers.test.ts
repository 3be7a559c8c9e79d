/**
 * `sluice serve --workers N` as an operator runs it: the real binary on a real PostgreSQL, both workers
 * answering on one port under their own replica ids, a killed worker started again, SIGTERM draining a
 * streamed answer in flight to its end before exiting 0; and the refusal of several workers on SQLite.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startModelServer } from '../../server/demo/model-server.js';
import { runCli, spawnCli } from '../helpers/cli-process.js';
import { gatewayFixture, UPSTREAM_API_KEY } from '../helpers/gateway.js';
import { jsonLines } from '../helpers/log-lines.js';
import { freePort } from '../helpers/loopback.js';
import { requestOnNewConnection } from '../helpers/new-connection-request.js';
import { signToken } from '../helpers/oidc.js';
import { postgresFixture } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp-dir.js';

const postgres = postgresFixture();
// Only its identity provider: the gateways under test are the spawned binaries.
const gateways = gatewayFixture();

async function configFile(text: string): Promise<string> {
  const dir = await tempDir('sluice-workers-');
  const file = join(dir, 'sluice.yaml');
  await writeFile(file, text.replaceAll('DIR', dir));
  return file;
}

describe('sluice serve --workers', () => {
  it('refuses --workers 2 without storage.database, exit 2, saying why', async () => {
    const file = await configFile(`listen: 127.0.0.1:0\nidentity:\n  issuer: https://idp.example.com\n  audience: sluice\n  cli_client_id: sluice-cli\nstorage:\n  dir: DIR/data\n`);
    const r = await runCli(['serve', '--config', file, '--workers', '2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--workers 2 needs storage.database');
    expect(r.stderr).toContain('ERR_CONFIG_INVALID');
    expect(r.stdout).not.toMatch(/gateway ready/);

    const bad = await runCli(['serve', '--config', file, '--workers', 'many']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--workers must be a whole number');
  });

  it('runs two workers on one port, restarts a dead one, and drains a streamed answer on SIGTERM (exit 0)', async () => {
    const { idp } = gateways;
    const database = await postgres.database();
    // 30 deltas 100 ms apart: an answer still streaming when SIGTERM arrives.
    const model = await startModelServer({ apiKey: UPSTREAM_API_KEY, chunks: 30, chunkDelayMs: 100 });
    onTestFinished(() => model.close());
    const port = await freePort();
    const file = await configFile(
      `listen: 127.0.0.1:${port}\nidentity:\n  issuer: ${idp.issuer}\n  audience: ${idp.audience}\n  cli_client_id: sluice-cli\n` +
        `storage:\n  dir: DIR/data\n  master_key: ${randomBytes(32).toString('base64')}\n  database: ${database}\n` +
        `replica:\n  id: gw\n  heartbeat_interval: 10m\n  dead_after: 30m\nshutdown_grace: 30s\n` +
        `connections:\n  - name: llm\n    type: http\n    upstream: ${model.url}\n    allow_groups: [ml-eng]\n    headers: { authorization: "Bearer ${UPSTREAM_API_KEY}" }\n`,
    );
    const child = spawnCli(['serve', '--config', file, '--workers', '2']);
    onTestFinished(() => child.kill('SIGKILL'));
    const readyOf = (worker: number) => jsonLines(child.stdout()).filter((l) => l.msg === 'sluice gateway ready' && l.worker === worker);
    const bothReady = async (): Promise<void> => {
      for (;;) {
        await child.waitForOutput(/sluice gateway ready/, 30_000);
        if (readyOf(0).length > 0 && readyOf(1).length > 0) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await bothReady();
    expect(child.stderr()).toContain('starting 2 workers');

    // Fresh connections are spread over the workers: both answer, each under its own replica id and pid.
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const res = await requestOnNewConnection(port, '/readyz');
      expect(res.status).toBe(200);
      ids.add(res.requestId);
    }
    await new Promise((r) => setTimeout(r, 300));
    const answered = jsonLines(child.stdout()).filter((l) => ids.has(String(l.request_id)));
    const pids = new Set(answered.map((l) => l.pid));
    expect(pids.size).toBe(2);
    const workerPids = new Map([0, 1].map((w) => [w, readyOf(w)[0]!.pid as number]));
    expect([...pids].sort()).toEqual([...workerPids.values()].sort());

    // A worker that dies is started again under the same number.
    process.kill(workerPids.get(1)!, 'SIGKILL');
    for (;;) {
      await new Promise((r) => setTimeout(r, 200));
      if (readyOf(1).length === 2) break;
      await child.waitForOutput(/sluice gateway ready/, 30_000);
    }
    expect(child.stderr()).toMatch(/worker 1 \(pid \d+\) exited \(SIGKILL\); starting it again/);

    // SIGTERM while an answer streams: the caller gets all of it, and the gateway exits 0.
    const token = await signToken(idp.signingKey, idp.claimsFor('alice'));
    const sdk = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1/proxy/llm/v1`, apiKey: token, maxRetries: 0, timeout: 60_000 });
    const stream = await sdk.chat.completions.create({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'finish me across a drain' }] });
    let text = '';
    let signalled = false;
    let deltas = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (++deltas === 3 && !signalled) {
        signalled = true;
        child.kill('SIGTERM');
        // No new connections once draining: the listen socket is closed on every worker.
        await expect.poll(() => requestOnNewConnection(port, '/healthz').then(() => 'open', (err: NodeJS.ErrnoException) => err.code), { timeout: 5000 }).toBe('ECONNREFUSED');
      }
    }
    expect(signalled).toBe(true);
    expect(text).toContain('finish me across a drain');
    expect(await child.exited).toBe(0);
    expect(child.stderr()).toContain('SIGTERM: draining 2 workers');
  }, 120_000);
});
