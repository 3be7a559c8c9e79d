/**
 * The seal log through the real gateway: sessions recorded from openai SDK traffic through tunnels, as
 * `sluice connect` carries it, are sealed into one gateway-wide hash chain with signed checkpoints; the signing key lives outside the
 * data directory. Each attack runs on a copy of the storage directory taken after the gateway stopped,
 * and the offline verifier (what `sluice audit verify` runs) must name what was done.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { access, appendFile, chmod, cp, mkdtemp, open, readFile, rm, stat, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { refuseHttp, startLocalListener } from '../../cli/tunnel/local-listener.js';
import { TunnelClient } from '../../cli/tunnel/tunnel-client.js';
import { connectionSchema } from '../../server/config/schema.js';
import { validateConfig } from '../../server/config/load.js';
import { startDemo } from '../../server/demo/run-demo.js';
import type { Principal } from '../../server/identity/principal.js';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { KeyRing, keyRingFromSettings } from '../../server/recording/key-ring.js';
import { openStorage } from '../../server/recording/open-storage.js';
import { Recording } from '../../server/recording/recording.js';
import { SealLog } from '../../server/recording/seal-log.js';
import { SEAL_CHECKPOINTS_FILE, SEAL_LOG_FILE, sealLineHash, signSealCheckpoint, type SealCheckpoint, type SealLogBody } from '../../server/recording/seal-log-format.js';
import { SessionWriter } from '../../server/recording/session-writer.js';
import { loadOrCreateSigningKey, loadOrCreateSigningKeyFile, signingKeyFrom, type SigningKey } from '../../server/recording/signing-key.js';
import { readSealLog } from '../../server/recording/verify-seal-log.js';
import { sealLogVerdictText, verdictText, type VerdictText } from '../../server/recording/verify-storage-dir.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { readStoredSession, verifyDirectory } from '../helpers/stored-sessions.js';

const gateways = gatewayFixture();

let gw: TestGateway;
let root: string;
let dataDir: string;
let keyFile: string;
let masterKey: string;
let keyRing: KeyRing;
let signing: SigningKey;
/** Checkpoints fetched from the running gateway, kept "outside" as an auditor would. */
let exported: SealCheckpoint[];
/** Sessions by user, as the index had them once the gateway stopped. */
const sessions: Record<string, { id: string; file: string; records: number }> = {};

interface DirVerdict {
  log: ReturnType<typeof sealLogVerdictText>;
  sessions: Record<string, VerdictText>;
  ok: boolean;
}

/** What `sluice audit verify --all` decides about a directory. */
async function verifyDir(dir: string, options: { exported?: SealCheckpoint[]; strict?: boolean; publicKey?: string } = {}): Promise<DirVerdict> {
  const publicKey = options.publicKey ?? signing.publicKeyPem;
  const report = await readSealLog({ dir, publicKey, ...(options.exported === undefined ? {} : { exported: options.exported }) });
  const out: Record<string, VerdictText> = {};
  for await (const v of verifyDirectory({ dir, keyRing, publicKey, sealLog: report })) out[v.id] = verdictText(v, options.strict ?? false);
  const log = sealLogVerdictText(report);
  return { log, sessions: out, ok: !log.failed && Object.values(out).every((v) => !v.failed) };
}

async function copyOfData(): Promise<string> {
  const copy = await mkdtemp(join(root, 'copy-'));
  await cp(dataDir, copy, { recursive: true });
  return copy;
}

async function eventsOf(dir: string, file: string): Promise<RecordedEvent[]> {
  return readStoredSession(dir, file, keyRing);
}

/** Byte offset of record `n` of a session file (records hold one or more events). */
async function recordOffset(dir: string, file: string, n: number): Promise<number> {
  return (await eventsOf(dir, file)).find((e) => e.record === n)!.offset;
}

function editIndex(dir: string, sql: string, ...params: unknown[]): void {
  const db = new Database(join(dir, 'index.sqlite'));
  try {
    db.prepare('DELETE FROM session_models WHERE session_id = ?').run(params[0]);
    db.prepare(sql).run(...params);
  } finally {
    db.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function waitForClosed(count: number): Promise<void> {
  const carol = await gw.token('carol');
  const deadline = Date.now() + 15_000;
  for (;;) {
    const res = await fetch(`${gw.url}/v1/sessions?status=closed`, { headers: { authorization: `Bearer ${carol}` } });
    const list = (await res.json()) as { sessions: unknown[] };
    if (list.sessions.length >= count) return;
    if (Date.now() > deadline) throw new Error(`only ${list.sessions.length} of ${count} sessions were sealed`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A tunnel to `llm` opened as `sub`, with a local port in front as `sluice connect` serves it. Its session
 * holds what goes through it and is sealed when it closes: when it ends is the test's to say, where a direct
 * proxy session, sealed once idle, could end between two calls of a slow machine and split in two.
 */
async function openTunnel(sub: string): Promise<{ openai: OpenAI; close(): Promise<void> }> {
  const token = await gw.token('alice', { sub });
  const client = new TunnelClient({ gateway: gw.url, connection: 'llm', getToken: async () => ({ token }) });
  await client.start();
  const localToken = 'sl_local_seal_chain';
  const listener = await startLocalListener({ bind: '127.0.0.1', port: 0, traffic: { protocol: 'http', token: localToken }, openStream: (meta) => client.openStream(meta), refuse: refuseHttp });
  return {
    openai: new OpenAI({ baseURL: `http://127.0.0.1:${listener.port}/v1`, apiKey: localToken, maxRetries: 0 }),
    close: async () => {
      client.close();
      await listener.close();
    },
  };
}

/** Three exchanges (one streamed) as `sub`, in one tunnel's session; `keepOpen` leaves the tunnel open, for the caller to close. */
async function traffic(sub: string, options: { keepOpen?: boolean } = {}): Promise<() => Promise<void>> {
  const tunnel = await openTunnel(sub);
  const client = tunnel.openai;
  await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: `first from ${sub}` }] });
  const stream = await client.chat.completions.create({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'second' }] });
  for await (const chunk of stream) void chunk;
  await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'third' }] });
  if (options.keepOpen === true) return tunnel.close;
  await tunnel.close();
  return async () => undefined;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-seal-chain-'));
  dataDir = join(root, 'data');
  keyFile = join(root, 'keys', 'signing-key.pem');
  masterKey = randomBytes(32).toString('base64');
  keyRing = keyRingFromSettings({ master_key: masterKey })!;
  gw = await gateways.start({
    model: { chunks: 4 },
    config: { storage: { dir: dataDir, master_key: masterKey, signing_key: keyFile, seal_checkpoint_every: 2 } },
  });
  // Sealed while the gateway runs, each when its tunnel closes.
  for (const sub of ['u1', 'u2', 'u3']) await traffic(sub);
  await waitForClosed(3);
  const res = await fetch(`${gw.url}/v1/audit/checkpoints?format=jsonl`, { headers: { authorization: `Bearer ${await gw.token('carol')}` } });
  exported = (await res.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as SealCheckpoint);
  // A restart continues the same chain: one more session, sealed at shutdown.
  await gw.stopApp();
  await gw.startApp();
  const closeLast = await traffic('u4', { keepOpen: true });
  await gw.stopApp();
  await closeLast();
  signing = await loadOrCreateSigningKeyFile(keyFile);
  const db = new Database(join(dataDir, 'index.sqlite'), { readonly: true });
  for (const row of db.prepare('SELECT id, user, file, records FROM sessions').all() as { id: string; user: string; file: string; records: number }[]) sessions[row.user] = row;
  db.close();
}, 60_000);

afterAll(async () => {
  await gw?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('the seal log, as the gateway keeps it', () => {
  it('chains every sealed session across restarts, signs checkpoints, and verifies untouched', async () => {
    expect(Object.keys(sessions).sort()).toEqual(['u1', 'u2', 'u3', 'u4']);
    const lines = (await readFile(join(dataDir, SEAL_LOG_FILE), 'utf8')).trimEnd().split('\n');
    const entries = lines.map((l) => JSON.parse(l) as { seq: number; type: string; log?: string; session?: string; status?: string; records?: number; prev: string });
    expect(entries[0]).toMatchObject({ seq: 0, type: 'start', prev: '0'.repeat(64) });
    expect(entries.slice(1).map((e) => [e.type, e.status])).toEqual(Array(4).fill(['seal', 'closed']));
    expect(new Set(entries.slice(1).map((e) => e.session))).toEqual(new Set(Object.values(sessions).map((s) => s.id)));
    for (const [i, e] of entries.entries()) {
      expect(e.seq).toBe(i);
      if (i > 0) expect(e.prev).toBe(sealLineHash(lines[i - 1]!));
    }
    for (const s of Object.values(sessions)) expect(entries.find((e) => e.session === s.id)?.records).toBe(s.records);
    // Whenever two entries are unsigned while running, and the head at shutdown.
    const checkpoints = (await readFile(join(dataDir, SEAL_CHECKPOINTS_FILE), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as SealCheckpoint);
    expect(checkpoints.map((c) => c.seq)).toEqual([1, 3, 4]);
    expect(checkpoints.every((c) => c.log === entries[0]!.log && c.key === signing.fingerprint)).toBe(true);

    const verdict = await verifyDir(dataDir);
    expect(verdict.ok).toBe(true);
    expect(verdict.log.text).toBe('intact (5 entries; signed through entry 4)');
    expect(Object.values(verdict.sessions).map((v) => v.status)).toEqual(['intact', 'intact', 'intact', 'intact']);
  });

  it('keeps the signing key outside the data directory, readable by its owner only', async () => {
    expect(await exists(join(dataDir, 'signing-key.pem'))).toBe(false);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
  });

  it('serves the checkpoints to auditors only, after a seq, as JSON or JSON lines', async () => {
    await gw.startApp();
    onTestFinished(() => gw.stopApp());
    expect(exported.map((c) => c.seq)).toEqual([1, 3]);
    const carol = { authorization: `Bearer ${await gw.token('carol')}` };
    const json = await fetch(`${gw.url}/v1/audit/checkpoints?since=2`, { headers: carol });
    expect(json.status).toBe(200);
    const body = (await json.json()) as { log: string; checkpoints: SealCheckpoint[]; next_since: number | null };
    expect(body.checkpoints.map((c) => c.seq)).toEqual([3, 4]);
    expect(body.next_since).toBeNull();
    const paged = (await (await fetch(`${gw.url}/v1/audit/checkpoints?limit=1`, { headers: carol })).json()) as typeof body;
    expect([paged.checkpoints.map((c) => c.seq), paged.next_since]).toEqual([[1], 1]);
    const alice = await fetch(`${gw.url}/v1/audit/checkpoints`, { headers: { authorization: `Bearer ${await gw.token('alice')}` } });
    expect(alice.status).toBe(403);
    expect(((await alice.json()) as { error: { code: string } }).error.code).toBe('ERR_FORBIDDEN');
    expect((await fetch(`${gw.url}/v1/audit/checkpoints`)).status).toBe(401);
  });
});

describe('tampering the seal log catches', () => {
  it('a sealed session cut to 5 records whose index row was deleted', async () => {
    const dir = await copyOfData();
    const s = sessions.u1!;
    expect(s.records).toBeGreaterThan(5);
    await truncate(join(dir, s.file), await recordOffset(dir, s.file, 5));
    editIndex(dir, 'DELETE FROM sessions WHERE id = ?', s.id);
    const v = await verifyDir(dir);
    expect(v.ok).toBe(false);
    expect(v.sessions[s.id]).toMatchObject({ status: 'broken', failed: true });
    expect(v.sessions[s.id]!.text).toBe(
      `broken at record 5: cut or rewritten: the seal log (entry ${v.sessions[s.id]!.text.match(/entry (\d+)/)![1]}) says the sealed session holds ${s.records} records ending in ${v.sessions[s.id]!.text.match(/ending in ([0-9a-f]{16})…/)![1]}…; the file has 5 (not in the index)`,
    );
    expect(Object.values(v.sessions).filter((x) => x.failed)).toHaveLength(1);
  });

  it('a sealed session cut to 5 records whose index row says interrupted', async () => {
    const dir = await copyOfData();
    const s = sessions.u2!;
    await truncate(join(dir, s.file), await recordOffset(dir, s.file, 5));
    const db = new Database(join(dir, 'index.sqlite'));
    db.prepare(`UPDATE sessions SET status = 'interrupted', records = NULL, final_hash = NULL WHERE id = ?`).run(s.id);
    db.close();
    const v = await verifyDir(dir);
    expect(v.sessions[s.id]).toMatchObject({ status: 'broken', failed: true });
    expect(v.sessions[s.id]!.text).toMatch(/^broken at record 5: cut or rewritten: the seal log \(entry \d+\) says the sealed session holds \d+ records/);
  });

  it('a session file deleted together with its index row', async () => {
    const dir = await copyOfData();
    const s = sessions.u3!;
    await rm(join(dir, s.file));
    editIndex(dir, 'DELETE FROM sessions WHERE id = ?', s.id);
    const v = await verifyDir(dir);
    expect(v.ok).toBe(false);
    expect(v.sessions[s.id]).toMatchObject({ status: 'broken', failed: true });
    expect(v.sessions[s.id]!.text).toMatch(new RegExp(`^broken: the session file ${s.file.replace(/[.]/g, '\\.')} is missing, but the seal log \\(entry \\d+\\) says it was sealed with ${s.records} records \\(not in the index\\)$`));
  });

  it('a session rewritten and re-signed by someone holding the master key but not the signing key', async () => {
    const dir = await copyOfData();
    const s = sessions.u1!;
    const original = await eventsOf(dir, s.file);
    const attacker = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
    await rm(join(dir, s.file));
    const writer = await SessionWriter.create({ io: nodeRecordingIo, path: join(dir, s.file), sessionId: s.id, created: Date.now(), keyRing, fsync: 'never', fsyncIntervalMs: 0 });
    await writer.append('session.start', original[0]!.fields as never);
    await writer.append('session.end', { reason: 'idle', exchanges: 0 });
    await writer.seal(attacker);
    const v = await verifyDir(dir);
    expect(v.sessions[s.id]).toMatchObject({ status: 'broken', failed: true });
    // And with the attacker's own public key planted as the trusted one, the seal log's checkpoints still refuse it.
    const planted = await verifyDir(dir, { publicKey: attacker.publicKeyPem });
    expect(planted.log).toMatchObject({ status: 'broken', failed: true });
    expect(planted.log.text).toMatch(/was signed by another key/);
  });

  it('a seal log entry removed, or altered', async () => {
    const removed = await copyOfData();
    const lines = (await readFile(join(removed, SEAL_LOG_FILE), 'utf8')).split('\n');
    await writeFile(join(removed, SEAL_LOG_FILE), [...lines.slice(0, 2), ...lines.slice(3)].join('\n'));
    const r = await verifyDir(removed);
    expect(r.log).toMatchObject({ status: 'broken', failed: true });
    expect(r.log.text).toMatch(/^broken at entry 2: Entry 2 of the seal log carries seq 3: entries were dropped, inserted or reordered/);

    const altered = await copyOfData();
    const entry = JSON.parse(lines[1]!) as { records: number };
    await writeFile(join(altered, SEAL_LOG_FILE), [lines[0], JSON.stringify({ ...entry, records: entry.records - 1 }), ...lines.slice(2)].join('\n'));
    const a = await verifyDir(altered);
    expect(a.log).toMatchObject({ status: 'broken', failed: true });
    expect(a.log.text).toMatch(/^broken at entry 2: Entry 2 of the seal log does not chain to the entry before it/);

    // Re-chained after the edit: the signed checkpoints no longer match.
    const rechained = await copyOfData();
    const out = [lines[0]!];
    for (const [i, line] of lines.slice(1).entries()) {
      if (line === '') continue;
      const e = JSON.parse(line) as { records: number; prev: string };
      out.push(JSON.stringify({ ...e, ...(i === 0 ? { records: e.records - 1 } : {}), prev: sealLineHash(out.at(-1)!) }));
    }
    await writeFile(join(rechained, SEAL_LOG_FILE), `${out.join('\n')}\n`);
    const c = await verifyDir(rechained);
    expect(c.log.text).toMatch(/^broken at entry 1: The checkpoint of entry 1 does not match the entry: the seal log was rewritten up to there/);
  });

  it('a tail cut back together with its checkpoints and sessions: invisible locally, caught by exported checkpoints', async () => {
    const dir = await copyOfData();
    const lines = (await readFile(join(dir, SEAL_LOG_FILE), 'utf8')).trimEnd().split('\n');
    // Keep entries 0–1; drop what came after, with its checkpoints, files and index rows.
    await writeFile(join(dir, SEAL_LOG_FILE), `${lines.slice(0, 2).join('\n')}\n`);
    await writeFile(join(dir, SEAL_CHECKPOINTS_FILE), '');
    for (const line of lines.slice(2)) {
      const e = JSON.parse(line) as { session: string; file: string };
      await rm(join(dir, e.file));
      editIndex(dir, 'DELETE FROM sessions WHERE id = ?', e.session);
    }
    const local = await verifyDir(dir);
    expect(local.ok).toBe(true);
    expect(local.log.text).toBe('intact (2 entries; no checkpoint yet; 2 entries after the last checkpoint, where a cut shows only against an exported checkpoint)');

    const pinned = await verifyDir(dir, { exported });
    expect(pinned.ok).toBe(false);
    expect(pinned.log.text).toBe('broken at entry 3: The exported checkpoint covers entries up to 3, but the seal log ends at entry 1: entries 2–3 were cut');

    // Cut while the sessions stay: a session sealed into the log but absent from it is caught without help.
    const kept = await copyOfData();
    await writeFile(join(kept, SEAL_LOG_FILE), `${lines.slice(0, 2).join('\n')}\n`);
    await writeFile(join(kept, SEAL_CHECKPOINTS_FILE), '');
    const k = await verifyDir(kept);
    expect(Object.values(k.sessions).filter((v) => v.failed)).toHaveLength(3);
    expect(Object.values(k.sessions).find((v) => v.failed)!.text).toMatch(/^broken: the session is sealed into seal log sl_[0-9a-f]{32}, but the log has no entry for it: entries were cut from its end or removed$/);

    // The whole log removed: the sessions sealed into it say so.
    const gone = await copyOfData();
    await rm(join(gone, SEAL_LOG_FILE));
    const g = await verifyDir(gone);
    expect(g.log.text).toMatch(/^broken at entry 1: The checkpoint covers entries up to 1, but the seal log has none: it was removed \(and 2 more problems\)$/);
    expect(Object.values(g.sessions).every((v) => v.failed && /the directory has no seals\.log: it was removed/.test(v.text))).toBe(true);
  });
});

const alice: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] });

describe('sessions that end without a seal, and retention', () => {
  it('pins a session left open by a crash: it verifies as interrupted, fails with --strict, and fails if cut further', async () => {
    const dir = await mkdtemp(join(root, 'crash-'));
    const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
    onTestFinished(() => store.close());
    const key = await loadOrCreateSigningKeyFile(join(root, 'crash-keys', 'signing-key.pem'));
    // The first run opens a session and "crashes": it is never closed.
    const first = await Recording.open({ dir, store, keyRing, signingKey: key, replica: 'r1' });
    onTestFinished(() => first.close());
    const s = await first.openSession({ id: 'ses_crashed', principal: alice, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    for (let i = 0; i < 5; i++) await s.append('exchange.error', { exchange: `req_${i}`, code: 'ERR_UPSTREAM_UNAVAILABLE', message: 'down', after_response_head: false });
    const second = await Recording.open({ dir, store, keyRing, signingKey: key, replica: 'r1' });
    await second.close();
    const log = (await readFile(join(dir, SEAL_LOG_FILE), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as { status?: string; records?: number });
    expect(log.at(-1)).toMatchObject({ status: 'interrupted', records: 6 });

    const check = async (d: string, strict = false): Promise<VerdictText> => {
      const report = await readSealLog({ dir: d, publicKey: key.publicKeyPem });
      for await (const v of verifyDirectory({ dir: d, keyRing, publicKey: key.publicKeyPem, sealLog: report })) if (v.id === 'ses_crashed') return verdictText(v, strict);
      throw new Error('not verified');
    };
    expect(await check(dir)).toMatchObject({ status: 'interrupted', failed: false });
    expect(await check(dir, true)).toMatchObject({ failed: true });
    const file = (await store.getSession('ses_crashed'))!.file;
    await truncate(join(dir, file), await recordOffset(dir, file, 3));
    expect(await check(dir)).toMatchObject({ status: 'broken', failed: true });
  });

  it('logs what retention destroys, signed at once; an unsigned "destroyed" entry vouches for nothing', async () => {
    const dir = await mkdtemp(join(root, 'retention-'));
    const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
    onTestFinished(() => store.close());
    const key = await loadOrCreateSigningKeyFile(join(root, 'retention-keys', 'signing-key.pem'));
    const recording = await Recording.open({ dir, store, keyRing, signingKey: key, retentionDays: 30, sealCheckpointEvery: 100 });
    for (const id of ['ses_old', 'ses_kept']) {
      await recording.openSession({ id, principal: alice, connection, via: 'proxy', clientAddress: '127.0.0.1' });
      await recording.closeSession(id, 'idle');
    }
    const kept = (await store.getSession('ses_kept'))!;
    // Only ses_old is old enough.
    const db = new Database(join(dir, 'index.sqlite'));
    db.prepare('UPDATE sessions SET started_at = started_at - ? WHERE id = ?').run(40 * 86_400_000, 'ses_old');
    db.close();
    expect(await recording.sweep()).toBe(1);
    await recording.close();
    const verify = async (d: string): Promise<Record<string, VerdictText>> => {
      const report = await readSealLog({ dir: d, publicKey: key.publicKeyPem });
      expect(sealLogVerdictText(report).failed).toBe(false);
      const out: Record<string, VerdictText> = {};
      for await (const v of verifyDirectory({ dir: d, keyRing, publicKey: key.publicKeyPem, sealLog: report })) out[v.id] = verdictText(v);
      return out;
    };
    expect(await verify(dir)).toEqual({ ses_kept: expect.objectContaining({ status: 'intact', failed: false }) });

    // An attacker appends a chained "destroyed" entry and removes the kept session: no checkpoint covers it.
    const lines = (await readFile(join(dir, SEAL_LOG_FILE), 'utf8')).trimEnd().split('\n');
    const forged = JSON.stringify({ seq: lines.length, type: 'destroyed', session: 'ses_kept', at: Date.now(), prev: sealLineHash(lines.at(-1)!) });
    await appendFile(join(dir, SEAL_LOG_FILE), `${forged}\n`);
    await rm(join(dir, kept.file));
    await store.deleteSession('ses_kept');
    expect(await verify(dir)).toEqual({
      ses_kept: expect.objectContaining({ status: 'broken', failed: true, text: expect.stringMatching(/the seal log says it was destroyed \(entry \d+\), but no signed checkpoint covers that entry/) }),
    });
  });
});

describe('where the signing key lives', () => {
  const config = (storage: Record<string, unknown>) =>
    validateConfig({
      identity: { issuer: 'https://idp.test', audience: 'a', cli_client_id: 'c' },
      storage: { master_key: randomBytes(32).toString('base64'), ...storage },
      connections: [{ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] }],
    });

  it('warns at start when the key is inside the data directory (an install from before storage.signing_key)', async () => {
    const dir = await mkdtemp(join(root, 'legacy-'));
    const warnings: string[] = [];
    const storage = await openStorage({ config: config({ dir }), log: { info: () => undefined, warn: (_o, msg) => warnings.push(msg) } });
    await storage!.close();
    expect(await exists(join(dir, 'signing-key.pem'))).toBe(true);
    expect(warnings).toContainEqual(expect.stringMatching(/^storage\.signing_key is not set, so the checkpoint signing key is .*signing-key\.pem: whoever can rewrite a recording there can also re-sign it/));
  });

  it('creates a configured key outside the data directory 0600, and refuses one that others may read', async () => {
    const dir = await mkdtemp(join(root, 'outside-'));
    const file = join(root, 'outside-keys', 'nested', 'signing-key.pem');
    const warnings: string[] = [];
    const log = { info: () => undefined, warn: (_o: object, msg: string) => warnings.push(msg) };
    const storage = await openStorage({ config: config({ dir, signing_key: file }), log });
    await storage!.close();
    expect(warnings.filter((w) => /signing key/.test(w))).toEqual([]);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await exists(join(dir, 'signing-key.pem'))).toBe(false);

    await chmod(file, 0o644);
    await expect(openStorage({ config: config({ dir, signing_key: file }), log })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      message: expect.stringContaining(`storage.signing_key: ${file} has mode 0644`),
    });
    // The legacy key in the data directory is held to the same rule.
    const legacy = await mkdtemp(join(root, 'legacy-loose-'));
    await loadOrCreateSigningKey(legacy);
    await chmod(join(legacy, 'signing-key.pem'), 0o640);
    await expect(loadOrCreateSigningKey(legacy)).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' });
  });

  it('the demo keeps its signing key beside its data directory, not in it', async () => {
    const data = join(root, 'demo-data');
    const demo = await startDemo({ dataDir: data, listen: '127.0.0.1:0' });
    onTestFinished(() => demo.close());
    expect(demo.signingKeyFile).toBe(join(root, 'demo-data-keys', 'signing-key.pem'));
    expect((await stat(demo.signingKeyFile)).mode & 0o777).toBe(0o600);
    expect(await exists(join(data, 'signing-key.pem'))).toBe(false);
    const served = (await (await fetch(`${demo.gateway.url}/v1/audit/public-key`)).json()) as { fingerprint: string };
    expect(served.fingerprint).toBe((await loadOrCreateSigningKeyFile(demo.signingKeyFile)).fingerprint);
  });
});

/** A seal of session `n` for a seal log driven directly. */
function sealOf(n: number): SealLogBody {
  return { type: 'seal', session: `ses_${n}`, file: `sessions/ses_${n}.rec`, status: 'closed', records: n, finalHash: 'ab'.repeat(32), sealedAt: 1_700_000_000_000 + n };
}

/** The write method every FileHandle shares, to inject disk faults into the seal log's appends. */
async function fileHandleWrite(): Promise<{ proto: FileHandle; original: FileHandle['write'] }> {
  const handle = await open(keyFile, 'r');
  const proto = Object.getPrototypeOf(handle) as FileHandle;
  await handle.close();
  return { proto, original: proto.write };
}

describe('the seal log refuses to continue a chain it cannot vouch for', () => {
  it('refuses a log cut back behind its last checkpoint, or whose checkpointed head was rewritten', async () => {
    const dir = await mkdtemp(join(root, 'rollback-'));
    const first = await SealLog.open({ dir, signingKey: signing, checkpointEvery: 1 });
    for (const n of [1, 2, 3]) await first.append(sealOf(n));
    await first.close();
    const lines = (await readFile(join(dir, SEAL_LOG_FILE), 'utf8')).trimEnd().split('\n');
    const checkpoints = await readFile(join(dir, SEAL_CHECKPOINTS_FILE), 'utf8');

    // Cut back to entry 1: the checkpoint of entry 3 outlives it.
    await writeFile(join(dir, SEAL_LOG_FILE), `${lines.slice(0, 2).join('\n')}\n`);
    await expect(SealLog.open({ dir, signingKey: signing, checkpointEvery: 1 })).rejects.toMatchObject({
      code: 'ERR_RECORDING_TAMPERED',
      message: expect.stringContaining('its last checkpoint signs entry 3, but the log ends at entry 1: it was cut back'),
    });

    // Entry 3 replaced by another, chained correctly: same seq, another hash than the one signed.
    const rewritten = JSON.stringify({ ...(JSON.parse(lines[3]!) as object), records: 99 });
    await writeFile(join(dir, SEAL_LOG_FILE), `${[...lines.slice(0, 3), rewritten].join('\n')}\n`);
    await expect(SealLog.open({ dir, signingKey: signing })).rejects.toMatchObject({
      code: 'ERR_RECORDING_TAMPERED',
      message: expect.stringContaining('its last checkpoint signs another hash for entry 3: the entry was rewritten'),
    });

    // Restored, and with a later checkpoint of another log after this one's, it continues where it was.
    await writeFile(join(dir, SEAL_LOG_FILE), `${lines.join('\n')}\n`);
    await appendFile(join(dir, SEAL_CHECKPOINTS_FILE), `${JSON.stringify(signSealCheckpoint(signing, `sl_${'cd'.repeat(16)}`, 9, 'ef'.repeat(32), Date.now()))}\n`);
    const again = await SealLog.open({ dir, signingKey: signing, checkpointEvery: 1 });
    expect(again.head).toEqual({ seq: 3, hash: sealLineHash(lines[3]!) });
    await again.append(sealOf(4));
    await again.close();
    const signed = (await readFile(join(dir, SEAL_CHECKPOINTS_FILE), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as SealCheckpoint);
    expect(signed.at(-1)).toMatchObject({ log: again.id, seq: 4 });
    expect((await readFile(join(dir, SEAL_CHECKPOINTS_FILE), 'utf8')).startsWith(checkpoints)).toBe(true);
  });

  it('refuses to start a new chain over a log that existed: emptied, torn to nothing, or removed beside its checkpoints', async () => {
    // First start: a log is created with its start entry, whole.
    const fresh = await mkdtemp(join(root, 'fresh-'));
    const log = await SealLog.open({ dir: fresh, signingKey: signing });
    await log.close();
    const start = await readFile(join(fresh, SEAL_LOG_FILE), 'utf8');
    expect(start).toMatch(/^\{"seq":0,"type":"start","log":"sl_[0-9a-f]{32}",[^\n]*\}\n$/);

    const emptied = await mkdtemp(join(root, 'emptied-'));
    await writeFile(join(emptied, SEAL_LOG_FILE), '');
    await expect(SealLog.open({ dir: emptied, signingKey: signing })).rejects.toMatchObject({ code: 'ERR_RECORDING_TAMPERED', message: expect.stringContaining('it exists but holds no whole entry') });
    expect(await readFile(join(emptied, SEAL_LOG_FILE), 'utf8')).toBe('');

    // Left as found, so the evidence survives the refusal.
    const torn = await mkdtemp(join(root, 'torn-'));
    await writeFile(join(torn, SEAL_LOG_FILE), start.slice(0, 20));
    await expect(SealLog.open({ dir: torn, signingKey: signing })).rejects.toMatchObject({ code: 'ERR_RECORDING_TAMPERED' });
    expect(await readFile(join(torn, SEAL_LOG_FILE), 'utf8')).toBe(start.slice(0, 20));

    await rm(join(fresh, SEAL_LOG_FILE));
    await expect(SealLog.open({ dir: fresh, signingKey: signing })).rejects.toMatchObject({ code: 'ERR_RECORDING_TAMPERED', message: expect.stringContaining('it is missing, but') });
    expect(await exists(join(fresh, SEAL_LOG_FILE))).toBe(false);
  });
});

describe('the seal log under disk faults', () => {
  it('a short write is completed, never chained onto', async () => {
    const dir = await mkdtemp(join(root, 'short-'));
    const log = await SealLog.open({ dir, signingKey: signing });
    const { proto, original } = await fileHandleWrite();
    const spy = vi.spyOn(proto, 'write').mockImplementationOnce(function (this: FileHandle, buffer: unknown, offset?: unknown, length?: unknown) {
      const buf = buffer as Buffer;
      const from = (offset as number | undefined) ?? 0;
      const len = (length as number | undefined) ?? buf.length - from;
      // The kernel took only half of what was asked, and said so without failing.
      return (original as (...args: unknown[]) => Promise<unknown>).call(this, buf, from, Math.floor(len / 2)) as never;
    });
    onTestFinished(() => spy.mockRestore());
    await log.append(sealOf(1));
    spy.mockRestore();
    await log.append(sealOf(2));
    await log.close();
    const report = await readSealLog({ dir, publicKey: signing.publicKeyPem });
    expect(sealLogVerdictText(report)).toMatchObject({ failed: false, text: 'intact (3 entries; signed through entry 2)' });
  });

  it('a write that makes no progress fails its append, and the next entry chains onto the last whole one', async () => {
    const dir = await mkdtemp(join(root, 'stalled-'));
    const log = await SealLog.open({ dir, signingKey: signing });
    const { proto } = await fileHandleWrite();
    const spy = vi.spyOn(proto, 'write').mockResolvedValueOnce({ bytesWritten: 0, buffer: Buffer.alloc(0) } as never);
    onTestFinished(() => spy.mockRestore());
    await expect(log.append({ type: 'destroyed', session: 'ses_1', at: 1 })).rejects.toThrow(/made no progress/);
    spy.mockRestore();
    await log.append(sealOf(2));
    await log.close();
    const entries = (await readFile(join(dir, SEAL_LOG_FILE), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; session?: string });
    expect(entries.map((e) => e.session ?? e.type)).toEqual(['start', 'ses_2']);
    expect(sealLogVerdictText(await readSealLog({ dir, publicKey: signing.publicKeyPem })).failed).toBe(false);
  });

  it('a retention sweep whose "destroyed" entry failed keeps the session and logs its destruction once, when it happens', async () => {
    const dir = await mkdtemp(join(root, 'sweep-fault-'));
    const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
    onTestFinished(() => store.close());
    const key = await loadOrCreateSigningKeyFile(join(root, 'sweep-fault-keys', 'signing-key.pem'));
    const recording = await Recording.open({ dir, store, keyRing, signingKey: key, retentionDays: 30 });
    onTestFinished(() => recording.close());
    await recording.openSession({ id: 'ses_old', principal: alice, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    await recording.closeSession('ses_old', 'idle');
    const old = (await store.getSession('ses_old'))!;
    const db = new Database(join(dir, 'index.sqlite'));
    db.prepare('UPDATE sessions SET started_at = started_at - ? WHERE id = ?').run(40 * 86_400_000, 'ses_old');
    db.close();

    const { proto } = await fileHandleWrite();
    const spy = vi.spyOn(proto, 'write').mockRejectedValueOnce(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }));
    onTestFinished(() => spy.mockRestore());
    await expect(recording.sweep()).rejects.toThrow(/EIO/);
    spy.mockRestore();
    expect(await exists(join(dir, old.file))).toBe(true);
    const destroyedIn = async (): Promise<number> =>
      (await readFile(join(dir, SEAL_LOG_FILE), 'utf8'))
        .trimEnd()
        .split('\n')
        .filter((l) => (JSON.parse(l) as { type: string }).type === 'destroyed').length;
    expect(await destroyedIn()).toBe(0);

    expect(await recording.sweep()).toBe(1);
    await recording.close();
    expect(await exists(join(dir, old.file))).toBe(false);
    expect(await destroyedIn()).toBe(1);
    expect(sealLogVerdictText(await readSealLog({ dir, publicKey: key.publicKeyPem })).failed).toBe(false);
  });
});

describe('the checkpoint export', () => {
  it("serves only the current log's checkpoints when the file also holds another log's", async () => {
    const dir = await copyOfData();
    const own = (JSON.parse((await readFile(join(dir, SEAL_LOG_FILE), 'utf8')).split('\n')[0]!) as { log: string }).log;
    const foreign = signSealCheckpoint(signing, `sl_${'cd'.repeat(16)}`, 7, 'ef'.repeat(32), Date.now());
    const cps = await readFile(join(dir, SEAL_CHECKPOINTS_FILE), 'utf8');
    await writeFile(join(dir, SEAL_CHECKPOINTS_FILE), `${JSON.stringify(foreign)}\n${cps}`);
    const other = await gateways.start({ config: { storage: { dir, master_key: masterKey, signing_key: keyFile } } });
    const carol = { authorization: `Bearer ${await other.token('carol')}` };
    const body = (await (await fetch(`${other.url}/v1/audit/checkpoints`, { headers: carol })).json()) as { log: string; checkpoints: SealCheckpoint[] };
    expect(body.log).toBe(own);
    expect(body.checkpoints.map((c) => [c.log, c.seq])).toEqual([
      [own, 1],
      [own, 3],
      [own, 4],
    ]);
    const jsonl = await (await fetch(`${other.url}/v1/audit/checkpoints?format=jsonl&since=3`, { headers: carol })).text();
    expect(jsonl.trim().split('\n').map((l) => (JSON.parse(l) as SealCheckpoint).seq)).toEqual([4]);
  });
});
