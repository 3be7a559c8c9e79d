/**
 * `sluice serve --workers 2` with `metrics_listen`, on a real PostgreSQL: calls spread over both workers,
 * and one scrape of the primary's metrics listener counts every one of them; SIGHUP to the primary reloads
 * (and audits) every worker.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startModelServer } from '../../server/demo/model-server.js';
import { spawnCli } from '../helpers/cli-process.js';
import { gatewayFixture, UPSTREAM_API_KEY } from '../helpers/gateway.js';
import { jsonLines } from '../helpers/log-lines.js';
import { freePort } from '../helpers/loopback.js';
import { completeOnNewConnection } from '../helpers/new-connection-request.js';
import { signToken } from '../helpers/oidc.js';
import { postgresFixture } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp-dir.js';

const postgres = postgresFixture();
// Only its identity provider: the gateway under test is the spawned binary.
const gateways = gatewayFixture();

/** The sum of every series of `name` in a Prometheus text exposition. */
function seriesSum(text: string, name: string): number {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

describe('sluice serve --workers with metrics_listen', () => {
  it('answers one scrape with the exchanges of every worker summed, and passes SIGHUP to every worker', async () => {
    const { idp } = gateways;
    const database = await postgres.database();
    const model = await startModelServer({ apiKey: UPSTREAM_API_KEY });
    onTestFinished(() => model.close());
    const port = await freePort();
    const metricsPort = await freePort();
    const dir = await tempDir('sluice-workers-metrics-');
    const file = join(dir, 'sluice.yaml');
    await writeFile(
      file,
      `listen: 127.0.0.1:${port}\nmetrics_listen: 127.0.0.1:${metricsPort}\n` +
        `identity:\n  issuer: ${idp.issuer}\n  audience: ${idp.audience}\n  cli_client_id: sluice-cli\n` +
        `storage:\n  dir: ${dir}/data\n  master_key: ${randomBytes(32).toString('base64')}\n  database: ${database}\n` +
        `replica:\n  id: gw\n  heartbeat_interval: 10m\n  dead_after: 30m\n` +
        `audit:\n  sinks:\n    - { name: disk, type: file, path: ${dir}/audit.jsonl, events: [admin.*], retry_delay: 20ms, max_retry_delay: 100ms }\n` +
        `connections:\n  - name: llm\n    type: http\n    upstream: ${model.url}\n    allow_groups: [ml-eng]\n    headers: { authorization: "Bearer ${UPSTREAM_API_KEY}" }\n`,
    );
    const child = spawnCli(['serve', '--config', file, '--workers', '2']);
    onTestFinished(() => child.kill('SIGKILL'));
    const ready = (): Record<string, unknown>[] => jsonLines(child.stdout()).filter((l) => l.msg === 'sluice gateway ready');
    await expect.poll(() => new Set(ready().map((l) => l.worker)).size, { timeout: 30_000, interval: 100 }).toBe(2);
    const scrape = async (): Promise<string> => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      return res.text();
    };
    expect(seriesSum(await scrape(), 'sluice_exchanges_total')).toBe(0);

    const token = await signToken(idp.signingKey, idp.claimsFor('alice'));
    const N = 24;
    const ids = new Set<string>();
    for (let i = 0; i < N; i++) {
      const res = await completeOnNewConnection(port, token, 'count me');
      expect(res.status).toBe(200);
      ids.add(res.requestId);
    }
    expect(ids.size).toBe(N);
    // Both workers answered some of them (each logs the calls it served under its own pid).
    const proxied = (): Record<string, unknown>[] => jsonLines(child.stdout()).filter((l) => JSON.stringify(l).includes('/v1/proxy/llm/v1/chat/completions'));
    await expect.poll(() => new Set(proxied().map((l) => l.pid)).size, { timeout: 5000 }).toBe(2);

    // An exchange is counted once its end is on record, which may follow the answer by a moment.
    await expect.poll(async () => seriesSum(await scrape(), 'sluice_exchanges_total'), { timeout: 10_000, interval: 100 }).toBe(N);
    const text = await scrape();
    expect(seriesSum(text, 'sluice_exchanges_total')).toBe(N);
    expect(text).toMatch(/sluice_exchanges_total\{[^}]*connection="llm"[^}]*\} 24\n/);
    expect(seriesSum(text, 'sluice_exchange_duration_seconds_count')).toBe(N);
    expect(text).toContain('sluice_reviews_pending 0');
    // The data port never serves the metrics.
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(404);

    // SIGHUP to the primary reaches every worker: each re-reads the file and audits its reload; the pool keeps running.
    child.kill('SIGHUP');
    const reloads = async (): Promise<Record<string, unknown>[]> =>
      jsonLines(await readFile(join(dir, 'audit.jsonl'), 'utf8').catch(() => '')).filter((e) => e.kind === 'admin.reload');
    await expect.poll(async () => (await reloads()).length, { timeout: 10_000, interval: 100 }).toBe(2);
    const told = await reloads();
    expect(told.every((e) => e.by === 'SIGHUP' && e.result === 'applied')).toBe(true);
    // One from each worker, under its own replica id.
    expect(new Set(told.map((e) => e.replica)).size).toBe(2);
    expect((await completeOnNewConnection(port, token, 'count me')).status).toBe(200);

    child.kill('SIGTERM');
    expect(await child.exited).toBe(0);
    // Closed with the pool.
    await expect(fetch(`http://127.0.0.1:${metricsPort}/metrics`)).rejects.toThrow();
  }, 120_000);
});
