/**
 * Shipping sealed sessions from the spool to a bucket (real s3rver) when the bucket fails: retries with
 * backoff, the spool's cap refusing new exchanges fail-closed and admitting them again once it drains,
 * quarantine of a session that fails its own verification (and `sluice admin recordings --retry`), a put
 * whose spool copy outlived it, and what a restart finds left in the spool. The bucket is made unreachable
 * by a TCP relay in front of s3rver that stops listening: the gateway's own S3 client meets real refusals.
 */
import { GetObjectCommand, ListObjectsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectionSchema } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { type RecordingArchive } from '../../server/recording/archive/archive.js';
import { S3Archive } from '../../server/recording/archive/s3-archive.js';
import { openDirectoryIndex } from '../../server/recording/audit-index.js';
import { nodeRecordingIo, type RecordingIo } from '../../server/recording/file-io.js';
import { keyRingFromSettings, KeyRing } from '../../server/recording/key-ring.js';
import { Recording } from '../../server/recording/recording.js';
import { loadOrCreateSigningKey } from '../../server/recording/signing-key.js';
import { verdictText, verifyStorageDir } from '../../server/recording/verify-storage-dir.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { runCliInProcess } from '../helpers/cli-in-process.js';
import { gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';
import { s3Fixture } from '../helpers/s3-server.js';

const PREFIX = 'spool-test/';
const root = new URL('../../', import.meta.url).pathname;

const s3 = s3Fixture({ credentialsInEnv: true });
const gateways = gatewayFixture();

/** A TCP relay to the S3 server that can stop listening (connections refused) and start again on its port. */
interface Relay {
  readonly endpoint: string;
  down(): Promise<void>;
  up(): Promise<void>;
}

async function startRelay(target: string): Promise<Relay> {
  const { hostname, port: targetPort } = new URL(target);
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = async (): Promise<void> => {
    const s = createServer((socket) => {
      const upstream = connect(Number(targetPort), hostname);
      for (const x of [socket, upstream]) {
        sockets.add(x);
        x.on('close', () => sockets.delete(x));
        x.on('error', () => undefined);
      }
      socket.pipe(upstream).pipe(socket);
    });
    await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve));
    port = (s.address() as AddressInfo).port;
    server = s;
  };
  const down = async (): Promise<void> => {
    const s = server;
    server = undefined;
    for (const x of sockets) x.destroy();
    if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  onTestFinished(down);
  return { endpoint: `http://127.0.0.1:${port}`, down, up: listen };
}

async function eventually<T>(read: () => Promise<T>, ok: (value: T) => boolean, what: string, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function keysIn(client: S3Client, bucket: string): Promise<string[]> {
  const out = await client.send(new ListObjectsCommand({ Bucket: bucket }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

/**
 * Puts `bytes` in place of the file at `path` at once (written beside it, then renamed over it): the
 * shipper checks spooled files while the test edits them, and must never see one half written.
 */
async function replaceFile(path: string, bytes: Buffer): Promise<void> {
  const beside = `${path}.edit`;
  await writeFile(beside, bytes);
  await rename(beside, path);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

interface Listing {
  spool: { bytes: number; admitting: boolean; spooled: number; quarantined: number; shipping: boolean };
  sessions: Array<{ session: string; file: string; status: string; bytes: number; attempts: number; last_error: string | null; quarantine_reason: string | null }>;
}

/** An operator: `platform` is the admin group of the test gateways. */
function adminToken(gw: TestGateway): Promise<string> {
  return gw.token('carol', { groups: ['platform'] });
}

async function spoolListing(gw: TestGateway): Promise<Listing> {
  const res = await gw.app.inject({ method: 'GET', url: '/v1/admin/recordings', headers: { authorization: `Bearer ${await adminToken(gw)}` } });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as Listing;
}

/** Every session of the gateway's index verified from the bucket; the verdicts and the records each holds. */
async function bucketVerdicts(gw: TestGateway, bucket: string, publicKey: string) {
  const keyRing = keyRingFromSettings({ master_key: gw.masterKey })!;
  const archive = new S3Archive({ bucket, prefix: PREFIX, client: s3.client() });
  const index = await openDirectoryIndex(gw.storageDir);
  try {
    const out = [];
    for await (const v of verifyStorageDir({ dir: gw.storageDir, archive, keyRing, publicKey, ...(index === undefined ? {} : { index }) })) out.push({ id: v.id, status: verdictText(v).status, records: v.result?.records });
    return out;
  } finally {
    await index?.close();
    archive.close();
  }
}

function shippingGateway(endpoint: string, bucket: string, storage: Record<string, unknown> = {}) {
  return gateways.start({
    connections: ({ model }) => [modelConnection(model, { record: { request_body: 'raw', response_body: 'raw' } })],
    config: {
      roles: { admin: ['platform'], auditor: ['security'] },
      storage: {
        recordings: { type: 's3', bucket, prefix: PREFIX, endpoint, force_path_style: true },
        proxy_session_idle: '100ms',
        upload_backoff: '50ms',
        upload_backoff_max: '200ms',
        upload_retries: 100,
        ...storage,
      },
    },
  });
}

const PROMPT_MARK = 'QUARTERLY-SECRET-7f3a9';

describe('shipping sessions to an unreachable bucket', () => {
  it('keeps exchanges going while the spool has room, refuses them with 503 past spool_max, and drains the backlog when the bucket is back', async () => {
    const bucket = await s3.bucket();
    const relay = await startRelay(s3.endpoint);
    await relay.down();
    const gw = await shippingGateway(relay.endpoint, bucket, { spool_max: '12KiB' });
    const alice = await gw.token('alice');
    const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: alice, maxRetries: 0 });
    // A prompt of about 3 KB, recorded raw: each sealed session holds a few KB of the spool.
    const prompt = `${PROMPT_MARK} ${'numbers '.repeat(400)}`;

    let answered = 0;
    let refusal: { status?: number; code?: unknown; message: string } | undefined;
    for (let i = 0; i < 20 && refusal === undefined; i++) {
      try {
        await sdk.chat.completions.create({ model: 'demo-small', messages: [{ role: 'user', content: prompt }] });
        answered++;
      } catch (err) {
        refusal = err as { status?: number; code?: unknown; message: string };
      }
      // The proxy session seals once idle, and its upload to the dead bucket fails: it stays spooled. Every
      // session has failed an upload by then, not merely left its first: with two uploads at a time, one
      // sealed while the others retry waits its turn untried.
      await eventually(() => spoolListing(gw), (l) => l.sessions.length >= answered && l.sessions.every((s) => s.last_error !== null), 'the session to be spooled and fail to upload');
    }
    expect(answered).toBeGreaterThanOrEqual(2);
    expect(refusal).toBeDefined();
    expect(refusal!.status).toBe(503);
    expect(refusal!.code).toBe('ERR_RECORDING_UNAVAILABLE');
    expect(refusal!.message).toContain('recording spool');
    expect(refusal!.message).toContain(gw.storageDir);

    // Not unready: the data path works, the backlog is said in the readiness detail.
    const full = await spoolListing(gw);
    expect(full.spool.admitting).toBe(false);
    expect(full.sessions.filter((s) => s.status === 'quarantined' || s.last_error === null)).toEqual([]);
    const ready = await gw.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect((ready.json() as { checks: { recording: { ok: boolean; spool: { spooled: number; admitting: boolean } } } }).checks.recording).toMatchObject({ ok: true, spool: { spooled: answered, admitting: false } });

    // The bucket comes back: the backlog drains by itself, and exchanges are admitted again.
    await relay.up();
    await eventually(() => spoolListing(gw), (l) => l.sessions.length === 0, 'the spool to drain');
    await sdk.chat.completions.create({ model: 'demo-small', messages: [{ role: 'user', content: prompt }] });
    answered++;

    const publicKey = ((await gw.app.inject({ method: 'GET', url: '/v1/audit/public-key' })).json() as { public_key_pem: string }).public_key_pem;
    await gw.stopApp();
    const sessions = await gw.sessions();
    // Every answered exchange is in a session in the bucket; the refused one opened no session, so none holds it.
    expect(sessions.reduce((n, s) => n + s.counters.requests, 0)).toBe(answered);
    expect((await keysIn(s3.client(), bucket)).sort()).toEqual(sessions.map((s) => `${PREFIX}${s.file}`).sort());
    for (const s of sessions) expect(await exists(join(gw.storageDir, s.file))).toBe(false);
    const verdicts = await bucketVerdicts(gw, bucket, publicKey);
    expect(verdicts.map((v) => v.status)).toEqual(sessions.map(() => 'intact'));
    // Record counts in the bucket equal what the index sealed.
    for (const s of sessions) expect(verdicts.find((v) => v.id === s.id)?.records).toBe(s.records);
    // Nothing readable in the bucket's files: no prompt, no answer.
    for (const file of await filesUnder(s3.directory)) expect((await readFile(file)).includes(Buffer.from(PROMPT_MARK))).toBe(false);
  });

  it('quarantines a spooled session that fails its own verification, ships the others, lists it in `sluice admin recordings`, and --retry ships it once repaired', async () => {
    const bucket = await s3.bucket();
    const relay = await startRelay(s3.endpoint);
    await relay.down();
    const gw = await shippingGateway(relay.endpoint, bucket);
    const alice = await gw.token('alice');
    const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: alice, maxRetries: 0 });
    for (let i = 0; i < 3; i++) {
      await sdk.chat.completions.create({ model: 'demo-small', messages: [{ role: 'user', content: `question ${i}` }] });
      await eventually(() => spoolListing(gw), (l) => l.sessions.length === i + 1, 'the session to be spooled');
    }
    const [victim] = (await spoolListing(gw)).sessions;
    const path = join(gw.storageDir, victim!.file);
    const original = await readFile(path);
    const forged = Buffer.from(original);
    forged[Math.floor(forged.length / 2)]! ^= 0x01;
    await replaceFile(path, forged);

    await relay.up();
    const settled = await eventually(() => spoolListing(gw), (l) => l.sessions.length === 1 && l.sessions[0]!.status === 'quarantined', 'the others to ship and the altered one to be quarantined');
    expect(settled.sessions[0]).toMatchObject({ session: victim!.session, status: 'quarantined' });
    expect(settled.sessions[0]!.quarantine_reason).toMatch(/fails verification: record \d+/);
    expect(settled.spool.quarantined).toBe(1);
    expect(await keysIn(s3.client(), bucket)).toHaveLength(2);
    expect(await keysIn(s3.client(), bucket)).not.toContain(`${PREFIX}${victim!.file}`);
    // It stays put while quarantined: no retries.
    await new Promise((r) => setTimeout(r, 400));
    expect((await spoolListing(gw)).sessions[0]).toMatchObject({ status: 'quarantined', attempts: settled.sessions[0]!.attempts });

    const home = await mkdtemp(join(tmpdir(), 'sluice-cli-'));
    onTestFinished(() => rm(home, { recursive: true, force: true }));
    const env = { XDG_CONFIG_HOME: home, SLUICE_TOKEN_STORE: 'file', SLUICE_GATEWAY: gw.url, SLUICE_TOKEN: await adminToken(gw) };
    const listed = await runCliInProcess(['admin', 'recordings'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(victim!.session);
    expect(listed.stdout).toContain('quarantined');
    expect(listed.stdout).toContain('fails verification');
    const json = await runCliInProcess(['admin', 'recordings', '--json'], env);
    expect(JSON.parse(json.stdout).sessions[0]).toMatchObject({ session: victim!.session, status: 'quarantined' });

    // Retried while still altered: quarantined again.
    await writeFile(path, original);
    const retry = await runCliInProcess(['admin', 'recordings', '--retry', victim!.session], env);
    expect(retry.code, retry.stderr).toBe(0);
    await eventually(() => spoolListing(gw), (l) => l.sessions.length === 0, 'the repaired session to ship');
    expect(await keysIn(s3.client(), bucket)).toContain(`${PREFIX}${victim!.file}`);
    const unknown = await runCliInProcess(['admin', 'recordings', '--retry', victim!.session], env);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('nothing in this gateway');
  });
});

const principal: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] });

async function recordingOver(dir: string, archive: RecordingArchive, io: RecordingIo = nodeRecordingIo, key = randomBytes(32), replica = 'shipping-test') {
  const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
  const recording = await Recording.open({
    dir,
    spoolDir: dir,
    archive,
    store,
    io,
    replica,
    keyRing: new KeyRing([{ id: 'default', key }]),
    signingKey: await loadOrCreateSigningKey(dir),
    shipping: { backoffMs: 20, backoffMaxMs: 50, retries: 3 },
  });
  onTestFinished(async () => {
    await recording.close();
    await store.close();
  });
  return { recording, store };
}

describe('a spool copy that outlived its upload', () => {
  it('is removed when the object holds the same bytes, and quarantined (the object untouched) when it holds others', async () => {
    const bucket = await s3.bucket();
    const client = s3.client();
    const dir = await mkdtemp(join(tmpdir(), 'sluice-ship-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    // The first removal of each spool file fails: the upload landed, the copy stays.
    const failed = new Set<string>();
    const io: RecordingIo = {
      ...nodeRecordingIo,
      remove: async (path) => {
        if (path.endsWith('.rec') && !failed.has(path)) {
          failed.add(path);
          throw Object.assign(new Error('I/O error'), { code: 'EIO' });
        }
        return nodeRecordingIo.remove(path);
      },
    };
    const archive = new S3Archive({ bucket, prefix: PREFIX, client });
    const { recording, store } = await recordingOver(dir, archive, io);

    await recording.openSession({ id: 'ses_same', principal, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    await recording.closeSession('ses_same', 'idle');
    const same = (await store.getSession('ses_same'))!.file;
    // The retry meets ARCHIVE_EXISTS, finds the same bytes, and removes the copy.
    await eventually(async () => recording.spool.shipments(), (l) => l.length === 0, 'the copy to be removed');
    expect(await exists(join(dir, same))).toBe(false);
    expect(await keysIn(client, bucket)).toEqual([`${PREFIX}${same}`]);

    // Another object already under the name of the next session: never replaced.
    await recording.openSession({ id: 'ses_other', principal, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    const other = recording.spool.pathOf((await store.getSession('ses_other'))!.file);
    const otherName = (await store.getSession('ses_other'))!.file;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${PREFIX}${otherName}`, Body: 'not the session' }));
    await recording.closeSession('ses_other', 'idle');
    const [shipment] = await eventually(async () => recording.spool.shipments(), (l) => l[0]?.status === 'quarantined', 'the session to be quarantined');
    expect(shipment!.quarantineReason).toContain('different object');
    expect(await exists(other)).toBe(true);
    const kept = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${PREFIX}${otherName}` }));
    expect(await kept.Body!.transformToString()).toBe('not the session');
  });

  it('quarantines a session whose uploads keep failing, without holding back the next one', async () => {
    const bucket = await s3.bucket();
    const dir = await mkdtemp(join(tmpdir(), 'sluice-ship-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const real = new S3Archive({ bucket, prefix: PREFIX, client: s3.client() });
    // A seam in front of the real bucket: every put of the first session fails.
    let refused = 0;
    const archive: RecordingArchive = {
      get: (n) => real.get(n),
      range: (n, o, l) => real.range(n, o, l),
      list: (p, o) => real.list(p, o),
      delete: (n) => real.delete(n),
      put: async (n, body) => {
        if (n.includes('ses_doomed')) {
          refused++;
          throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        }
        return real.put(n, body);
      },
    };
    const { recording } = await recordingOver(dir, archive);
    await recording.openSession({ id: 'ses_doomed', principal, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    await recording.closeSession('ses_doomed', 'idle');
    await recording.openSession({ id: 'ses_fine', principal, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    await recording.closeSession('ses_fine', 'idle');
    const [doomed] = await eventually(async () => recording.spool.shipments(), (l) => l.length === 1 && l[0]!.status === 'quarantined', 'the quarantine');
    expect(doomed).toMatchObject({ session: 'ses_doomed', attempts: 4 });
    expect(doomed!.quarantineReason).toContain('failed 4 times');
    expect(refused).toBe(4);
    expect(await keysIn(s3.client(), bucket)).toEqual([expect.stringContaining('ses_fine')]);
    expect(recording.spool.stats()).toMatchObject({ quarantined: 1, spooled: 0, failures: 4, uploaded: 1 });
  });
});

/** The child: a gateway's recording whose bucket is unreachable; one session sealed, one open, then killed. */
const CHILD = `
import { connectionSchema } from '${root}server/config/schema.ts';
import { S3Archive } from '${root}server/recording/archive/s3-archive.ts';
import { KeyRing } from '${root}server/recording/key-ring.ts';
import { Recording } from '${root}server/recording/recording.ts';
import { loadOrCreateSigningKey } from '${root}server/recording/signing-key.ts';
import { SqliteStore } from '${root}server/store/sqlite-store.ts';
const dir = process.env.DIR;
const store = new SqliteStore({ file: dir + '/index.sqlite' });
const archive = new S3Archive({ bucket: process.env.BUCKET, prefix: '${PREFIX}', endpoint: process.env.ENDPOINT, forcePathStyle: true });
const recording = await Recording.open({
  dir, spoolDir: dir, archive, store, replica: 'crash-test', fsync: 'always',
  keyRing: new KeyRing([{ id: 'default', key: Buffer.from(process.env.KEY, 'base64') }]),
  signingKey: await loadOrCreateSigningKey(dir),
  shipping: { backoffMs: 60000 },
});
const principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4e9, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] });
const sealed = await recording.openSession({ id: 'ses_sealed', principal, connection, via: 'proxy', clientAddress: '127.0.0.1' });
await sealed.append('exchange.request', { exchange: 'req_1', method: 'POST', path: '/v1/chat/completions', headers: {}, decision: { action: 'allow' } });
await recording.closeSession('ses_sealed', 'idle');
const open = await recording.openSession({ id: 'ses_open', principal, connection, via: 'proxy', clientAddress: '127.0.0.1' });
await open.append('exchange.request', { exchange: 'req_2', method: 'POST', path: '/v1/chat/completions', headers: {}, decision: { action: 'allow' } });
process.stdout.write('ready\\n');
setInterval(() => undefined, 1000);
`;

describe('a restart after an unclean stop', () => {
  it('ships what the killed run left in the spool, sealed and unsealed, and both verify from the bucket', async () => {
    const bucket = await s3.bucket();
    const dir = await mkdtemp(join(tmpdir(), 'sluice-ship-crash-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const key = randomBytes(32);
    // A port nothing listens on: the killed run's bucket was unreachable.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
      cwd: root,
      env: { ...process.env, DIR: dir, KEY: key.toString('base64'), BUCKET: bucket, ENDPOINT: `http://127.0.0.1:${deadPort}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.on('exit', (code) => reject(new Error(`child exited ${code}: ${err}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const left = (await filesUnder(join(dir, 'sessions'))).filter((f) => f.endsWith('.rec'));
    expect(left).toHaveLength(2);

    const archive = new S3Archive({ bucket, prefix: PREFIX, client: s3.client() });
    // The same replica starts again: its open session is marked interrupted, and everything left is shipped.
    const { recording, store } = await recordingOver(dir, archive, nodeRecordingIo, key, 'crash-test');
    // Done once the shipper has let go of both, not as soon as the files are gone: it removes a spool copy
    // first and forgets the shipment when that removal is over, which a busy machine can keep apart.
    await eventually(
      async () => ({ files: (await filesUnder(join(dir, 'sessions'))).filter((f) => f.endsWith('.rec')), shipments: recording.spool.shipments() }),
      (left) => left.files.length === 0 && left.shipments.length === 0,
      'the spool to empty',
    );
    expect((await keysIn(s3.client(), bucket)).sort()).toEqual([(await store.getSession('ses_open'))!.file, (await store.getSession('ses_sealed'))!.file].map((f) => `${PREFIX}${f}`).sort());
    const verdicts = [];
    const index = await openDirectoryIndex(dir);
    for await (const v of verifyStorageDir({ dir, archive, keyRing: recording.keyRing, publicKey: recording.publicKeyPem, ...(index === undefined ? {} : { index }) })) verdicts.push([v.id, verdictText(v).status]);
    await index?.close();
    expect(verdicts.sort()).toEqual([
      ['ses_open', 'interrupted'],
      ['ses_sealed', 'intact'],
    ]);
  });
});
