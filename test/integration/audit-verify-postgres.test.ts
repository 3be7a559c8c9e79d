/**
 * `sluice audit verify` of storage whose index is PostgreSQL (`storage.database`): the sessions and their
 * data keys come from the database, so format 2 files verify (not "unverifiable"), through `--config` (with
 * the URL as `${env:…}`) or `--database`. And the checkpoints export of a directory with a seal log per
 * worker covers every log and pins them all.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../shared/errors.js';
import { sealCheckpointSchema } from '../../server/recording/seal-log-format.js';
import { runCliInProcess } from '../helpers/cli-in-process.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { postgresFixture } from '../helpers/postgres.js';
import { packageModulesLoadedAfter, PROJECT_ROOT } from '../helpers/tsx-script.js';

const postgres = postgresFixture();
const gateways = gatewayFixture();

/** The CLI's whole environment: no master key from the process, so the config's (or --key-file) is used. */
const baseEnv = { PATH: process.env.PATH ?? '', SLUICE_MASTER_KEY: '' };

interface RecordedStorage {
  gw: TestGateway;
  database: string;
  /** The gateway config for the CLI, naming the database as `${env:SLUICE_TEST_DATABASE}`. */
  config: string;
  publicKeyFile: string;
  keyFile: string;
  files: string[];
}

/** The gateway's checkpoint-signing public key (PEM), as it publishes it. */
async function checkpointPublicKey(gw: TestGateway): Promise<string> {
  return ((await (await fetch(`${gw.url}/v1/audit/public-key`)).json()) as { public_key_pem: string }).public_key_pem;
}

/** Writes what an auditor verifies with — the checkpoint public key and the master key — beside `gw`'s storage directory. */
async function writeAuditorKeys(gw: TestGateway, publicKeyPem: string): Promise<{ publicKeyFile: string; keyFile: string }> {
  const publicKeyFile = join(gw.storageDir, '..', 'checkpoint-key.pem');
  await writeFile(publicKeyFile, publicKeyPem);
  const keyFile = join(gw.storageDir, '..', 'master.key');
  await writeFile(keyFile, gw.masterKey);
  return { publicKeyFile, keyFile };
}

/** A gateway on a fresh database that recorded `calls` SDK calls as sessions, stopped so they are sealed. */
async function recordedStorage(calls = 2): Promise<RecordedStorage> {
  const database = await postgres.database();
  const gw = await gateways.start({ config: { storage: { database }, replica: { id: 'verify-a', heartbeat_interval: '10m', dead_after: '30m' } } });
  for (let i = 0; i < calls; i++) {
    // Proxy calls of one user share a session: a user per call makes a session per call.
    const client = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: await gw.token('alice', { sub: `alice-${i}` }), maxRetries: 0, timeout: 30_000 });
    const completion = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: `recorded call ${i}` }] });
    expect(completion.choices[0]?.message.content).toContain(`recorded call ${i}`);
  }
  const publicKeyPem = await checkpointPublicKey(gw);
  // Stopping the app seals the open sessions.
  await gw.stopApp();
  const sessions = await gw.sessions();
  expect(sessions).toHaveLength(calls);
  const { publicKeyFile, keyFile } = await writeAuditorKeys(gw, publicKeyPem);
  const config = join(gw.storageDir, '..', 'verify.yaml');
  await writeFile(
    config,
    JSON.stringify({
      identity: { issuer: 'https://idp.test', audience: 'sluice', cli_client_id: 'sluice-cli' },
      storage: { dir: gw.storageDir, master_key: gw.masterKey, database: '${env:SLUICE_TEST_DATABASE}' },
      replica: { id: 'verify-a' },
    }),
  );
  return { gw, database, config, publicKeyFile, keyFile, files: sessions.map((s) => s.file) };
}

function withPassword(url: string, password: string): string {
  const u = new URL(url);
  u.password = password;
  return u.toString();
}

/** Whether `pg` is loaded after running `body` (an ES module script under tsx) in a fresh Node process. */
async function pgLoadedAfter(body: string): Promise<boolean> {
  return (await packageModulesLoadedAfter(body, 'pg')) > 0;
}

describe('sluice audit verify with the index in PostgreSQL', () => {
  it('loads pg only when a database index is opened', async () => {
    const cli = `await import(${JSON.stringify(join(PROJECT_ROOT, 'cli/main.ts'))});`;
    expect(await pgLoadedAfter(cli)).toBe(false);
    const open = `${cli}\nconst { openDatabaseIndex } = await import(${JSON.stringify(join(PROJECT_ROOT, 'server/recording/audit-index.ts'))});\nawait openDatabaseIndex({ url: 'postgres://nobody@127.0.0.1:1/none' }).catch(() => undefined);`;
    expect(await pgLoadedAfter(open)).toBe(true);
  });

  it('--config reads sessions and data keys from storage.database: intact, not unverifiable; a flipped byte is tampering', async () => {
    const s = await recordedStorage(2);
    const env = { ...baseEnv, SLUICE_TEST_DATABASE: s.database };
    const args = ['audit', 'verify', '--all', '--config', s.config, '--public-key', s.publicKeyFile];

    const ok = await runCliInProcess(args, env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.match(/intact \(\d+ records, signed\)/g)).toHaveLength(s.files.length);
    expect(ok.stdout).not.toContain('unverifiable');
    expect(ok.stdout).not.toContain('not in the index');

    const json = await runCliInProcess([...args, '--json'], env);
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as { ok: boolean; index: string; sessions: { status: string; index_status: string | null }[] };
    expect(report.ok).toBe(true);
    expect(report.index).toBe(`PostgreSQL postgres://${new URL(s.database).username}@${new URL(s.database).host}${new URL(s.database).pathname}, replica verify-a`);
    expect(report.sessions.map((v) => [v.status, v.index_status])).toEqual(s.files.map(() => ['intact', 'closed']));

    // The same directory without the database: the data keys are not to be had.
    const withoutIndex = await runCliInProcess(['audit', 'verify', '--all', '--data-dir', s.gw.storageDir, '--key-file', s.keyFile, '--public-key', s.publicKeyFile], env);
    expect(withoutIndex.code).toBe(EXIT.failure);
    expect(withoutIndex.stdout).toContain('unverifiable');

    const file = join(s.gw.storageDir, s.files[0]!);
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    await writeFile(file, bytes);
    const bad = await runCliInProcess(args, env);
    expect(bad.code).toBe(EXIT.failure);
    expect(bad.stdout).toMatch(/broken at record \d+/);
    expect(bad.stderr).toContain('ERR_RECORDING_TAMPERED');
    expect(bad.stderr).toContain('(index in PostgreSQL postgres://');
  });

  it('--database works without a config, never prints the password; --replica scopes the sessions', async () => {
    const s = await recordedStorage(1);
    const url = withPassword(s.database, 's3cret-pw');
    const args = ['audit', 'verify', '--all', '--data-dir', s.gw.storageDir, '--key-file', s.keyFile, '--public-key', s.publicKeyFile, '--database', url];
    const ok = await runCliInProcess(args, baseEnv);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/intact \(\d+ records, signed\)/);
    expect(ok.stdout).not.toContain('unverifiable');

    const file = join(s.gw.storageDir, s.files[0]!);
    const bytes = await readFile(file);
    bytes[bytes.length - 10]! ^= 0x80;
    await writeFile(file, bytes);
    const bad = await runCliInProcess(args, baseEnv);
    expect(bad.code).toBe(EXIT.failure);
    expect(bad.stderr).toContain('ERR_RECORDING_TAMPERED');
    expect(bad.stderr).toContain('PostgreSQL postgres://');
    expect(bad.stdout + bad.stderr).not.toContain('s3cret-pw');

    // Another replica's sessions only: this directory's file is still verified (its key is looked up by id), but the index does not list it.
    const other = await runCliInProcess([...args, '--replica', 'verify-b'], baseEnv);
    expect(other.stdout).toContain('(not in the index)');

    // A database out of reach: unavailable, not tampered, and still no password shown.
    const unreachable = [...args.slice(0, -1), 'postgres://verifier:s3cret-pw@127.0.0.1:1/none'];
    const down = await runCliInProcess(unreachable, baseEnv);
    expect(down.code).toBe(EXIT.unavailable);
    expect(down.stderr).toContain('ERR_STORE_UNAVAILABLE');
    expect(down.stdout + down.stderr).not.toContain('s3cret-pw');

    // --database and --config both name a database: refused.
    const both = await runCliInProcess([...args, '--config', 'x.yaml'], baseEnv);
    expect(both.code).toBe(EXIT.usage);
    expect(both.stderr).toContain('--config or --database');
  });

  it('pages sessions by (started_at, id): a page of one lists every session once, in order', async () => {
    const s = await recordedStorage(3);
    const { PostgresAuditIndex } = await import('../../server/recording/postgres-audit-index.js');
    const index = await PostgresAuditIndex.open({ url: s.database, pageSize: 1 });
    const listed: string[] = [];
    try {
      for await (const session of index.sessions()) listed.push(session.file);
    } finally {
      await index.close();
    }
    expect(listed).toHaveLength(s.files.length);
    expect(new Set(listed)).toEqual(new Set(s.files));
  });
});

describe('the checkpoints export of a directory with a seal log per worker', () => {
  it('GET /v1/audit/checkpoints and sluice audit checkpoints cover every seal log, and audit verify --checkpoints pins them all', async () => {
    // Workers 0 and 1 of one storage directory, as `serve --workers 2` runs them: a seal log each.
    const storage = { seal_checkpoint_every: 1 };
    const w0 = await gateways.start({ config: { storage } });
    const w1 = await gateways.start({ config: { storage: { ...storage, dir: w0.storageDir, master_key: w0.masterKey } }, app: { worker: 1 } });
    for (const [i, gw] of [w0, w1].entries()) {
      const client = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: await gw.token('alice', { sub: `worker-${i}-user` }), maxRetries: 0, timeout: 30_000 });
      await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: `on worker ${i}` }] });
    }
    const publicKeyPem = await checkpointPublicKey(w0);
    // Stopped, each seals its session into its own log and signs it; worker 0 then serves the export alone.
    await w1.stopApp();
    await w0.stopApp();
    await w0.startApp();
    const logIds = await Promise.all(
      ['seals.log', 'seals.1.log'].map(async (name) => (JSON.parse((await readFile(join(w0.storageDir, name), 'utf8')).split('\n')[0]!) as { log: string }).log),
    );

    const carol = await w0.token('carol');
    const body = (await (await fetch(`${w0.url}/v1/audit/checkpoints`, { headers: { authorization: `Bearer ${carol}` } })).json()) as {
      log: string;
      logs: string[];
      checkpoints: { log: string; seq: number }[];
      next: string | null;
    };
    expect(body.log).toBe(logIds[0]);
    expect(body.logs).toEqual(logIds);
    expect(new Set(body.checkpoints.map((c) => c.log))).toEqual(new Set(logIds));
    expect(body.next).toBeNull();

    // Paged one at a time by the cursor: the same checkpoints, each once.
    const paged: { log: string; seq: number }[] = [];
    let after: string | null | undefined;
    do {
      const page = (await (await fetch(`${w0.url}/v1/audit/checkpoints?limit=1${after ? `&after=${after}` : ''}`, { headers: { authorization: `Bearer ${carol}` } })).json()) as typeof body;
      paged.push(...page.checkpoints);
      after = page.next;
    } while (after !== null);
    expect(paged).toEqual(body.checkpoints);
    const unknown = await fetch(`${w0.url}/v1/audit/checkpoints?after=sl_${'0'.repeat(32)}:3`, { headers: { authorization: `Bearer ${carol}` } });
    expect(unknown.status).toBe(400);

    const env = { ...baseEnv, XDG_CONFIG_HOME: join(w0.storageDir, '..', 'cli-home'), SLUICE_TOKEN_STORE: 'file', SLUICE_TOKEN: carol, SLUICE_GATEWAY: w0.url };
    const exported = await runCliInProcess(['audit', 'checkpoints', '--json'], env);
    expect(exported.code, exported.stderr).toBe(0);
    const lines = exported.stdout.trim().split('\n').map((l) => sealCheckpointSchema.parse(JSON.parse(l)));
    expect(new Set(lines.map((c) => c.log))).toEqual(new Set(logIds));
    await w0.stopApp();

    const checkpointsFile = join(w0.storageDir, '..', 'exported.jsonl');
    await writeFile(checkpointsFile, exported.stdout);
    const { publicKeyFile, keyFile } = await writeAuditorKeys(w0, publicKeyPem);
    const args = ['audit', 'verify', '--all', '--data-dir', w0.storageDir, '--key-file', keyFile, '--public-key', publicKeyFile, '--checkpoints', checkpointsFile];
    const ok = await runCliInProcess(args, baseEnv);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout.match(/intact \(\d+ records, signed\)/g)).toHaveLength(2);
    expect(ok.stdout).toMatch(/seal log {2}intact: seals\.log \([^)]*pinned through entry \d+ by the exported checkpoints[^)]*\), seals\.1\.log \([^)]*pinned through entry \d+ by the exported checkpoints/);

    // Worker 1's log cut back to its start, with its own checkpoints gone too: only the export still shows it.
    await writeFile(join(w0.storageDir, 'seals.1.log'), `${(await readFile(join(w0.storageDir, 'seals.1.log'), 'utf8')).split('\n')[0]}\n`);
    await writeFile(join(w0.storageDir, 'seals.1.checkpoints'), '');
    const cut = await runCliInProcess(args, baseEnv);
    expect(cut.code).toBe(EXIT.failure);
    expect(cut.stderr).toContain('ERR_RECORDING_TAMPERED');
    expect(cut.stdout).toContain('seals.1.log: ');
  });
});
