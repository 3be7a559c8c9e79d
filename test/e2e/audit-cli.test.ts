/**
 * `sluice sessions`, `sluice audit verify`, `sluice audit checkpoints` and `sluice admin rotate-key` as
 * users run them: the real CLI binary against a real gateway whose sessions were recorded from openai
 * SDK traffic through the direct proxy, with its signing key outside the data directory; `audit verify`
 * then runs offline on copies of the storage directory, untouched and tampered with.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { access, cp, mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { keyRingFromSettings } from '../../server/recording/key-ring.js';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { SEAL_CHECKPOINTS_FILE, SEAL_LOG_FILE } from '../../server/recording/seal-log-format.js';
import { SessionWriter } from '../../server/recording/session-writer.js';
import { signingKeyFrom } from '../../server/recording/signing-key.js';
import { ERRORS } from '../../shared/errors.js';
import type { SessionDetailJson, SessionJson, SessionListJson } from '../../shared/sessions-api.js';
import { runCli, spawnCli } from '../helpers/cli-process.js';
import { closedSessions, gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';
import { readStoredSession } from '../helpers/stored-sessions.js';

const gateways = gatewayFixture();
let gw: TestGateway;
let gateway: string;
let root: string;
let dataDir: string;
let keyFile: string;
let masterKey: string;
/** The PEM of GET /v1/audit/public-key, kept outside the data directory. */
let publicKeyFile: string;
/** `sluice audit checkpoints --json`, taken while the gateway ran. */
let checkpointsFile: string;
let streamedAnswer = '';
let session: SessionJson;
const tokens: Record<string, string> = {};

function env(user: string): NodeJS.ProcessEnv {
  return { SLUICE_TOKEN: tokens[user]!, SLUICE_GATEWAY: gateway, XDG_CONFIG_HOME: join(root, 'xdg') };
}

/** Offline: no token, no gateway. */
const offline: NodeJS.ProcessEnv = { SLUICE_TOKEN: '', SLUICE_GATEWAY: '', SLUICE_MASTER_KEY: '' };

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-e2e-audit-'));
  dataDir = join(root, 'data');
  masterKey = randomBytes(32).toString('base64');
  keyFile = join(root, 'master.key');
  await writeFile(keyFile, `${masterKey}\n`, { mode: 0o600 });
  gw = await gateways.start({
    model: { chunks: 5, chunkDelayMs: 10 },
    connections: ({ model }) => [modelConnection(model, { record: { request_body: 'raw', response_body: 'raw' } }), modelConnection(model, { name: 'llm2' })],
    config: {
      roles: { auditor: ['security'] },
      storage: { dir: dataDir, master_key: masterKey, proxy_session_idle: '500ms', signing_key: join(root, 'keys', 'signing-key.pem'), seal_checkpoint_every: 1 },
    },
  });
  gateway = gw.url;
  for (const user of ['alice', 'bob', 'carol'] as const) tokens[user] = await gw.token(user);
  publicKeyFile = join(root, 'public.pem');
  await writeFile(publicKeyFile, ((await (await fetch(`${gateway}/v1/audit/public-key`)).json()) as { public_key_pem: string }).public_key_pem);

  const client = new OpenAI({ baseURL: `${gateway}/v1/proxy/llm/v1`, apiKey: tokens.alice!, maxRetries: 0 });
  await client.chat.completions.create({ model: 'demo-small', messages: [{ role: 'user', content: 'first question' }] });
  const stream = await client.chat.completions.create({ model: 'demo-large', stream: true, messages: [{ role: 'user', content: 'second question' }] });
  for await (const chunk of stream) streamedAnswer += chunk.choices[0]?.delta?.content ?? '';
  [session] = (await closedSessions(gateway, tokens.carol!, 1)) as [SessionJson];
}, 60_000);

afterAll(async () => {
  await gw?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('sluice sessions (against the gateway)', () => {
  it('list --json gives auditors every session and users their own; the plain list is a table with ids', async () => {
    const asCarol = await runCli(['sessions', 'list', '--json'], { env: env('carol') });
    expect(asCarol.code, asCarol.stderr).toBe(0);
    const carolList = JSON.parse(asCarol.stdout) as SessionListJson;
    expect(carolList.sessions.map((s) => s.id)).toEqual([session.id]);
    expect(carolList.sessions[0]).toMatchObject({ user: { sub: 'alice' }, connection: 'llm', status: 'closed', models: ['demo-small', 'demo-large'] });

    const asBob = await runCli(['sessions', 'list', '--json'], { env: env('bob') });
    expect(JSON.parse(asBob.stdout)).toEqual({ sessions: [], next: null });
    const bobAsksAlice = await runCli(['sessions', 'list', '--user', 'alice'], { env: env('bob') });
    expect(bobAsksAlice.code).toBe(ERRORS.ERR_FORBIDDEN.exit);
    expect(bobAsksAlice.stderr).toMatch(/ERR_FORBIDDEN/);

    const plain = await runCli(['sessions', 'list', '--model', 'demo-large', '--since', '1h'], { env: env('carol') });
    expect(plain.code, plain.stderr).toBe(0);
    const [header, row, ...rest] = plain.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^ID\s+TIME\s+USER\s+CONNECTION\s+REQ\s+MODEL\s+TOKENS\s+D\/H\/M\s+STATUS$/);
    expect(row).toMatch(new RegExp(`^${session.id}\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d\\s+alice@example.com\\s+llm\\s+2\\s+demo-small \\+1\\s+\\S+\\s+0/0/0\\s+closed$`));
    expect(rest).toEqual([]);
    const none = await runCli(['sessions', 'list', '--model', 'nope'], { env: env('carol') });
    expect(none.stdout).toBe('No sessions match.\n');
  });

  it('show prints the verdict and each exchange with its model and token usage', async () => {
    const shown = await runCli(['sessions', 'show', session.id], { env: env('carol') });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(`session:     ${session.id}`);
    expect(shown.stdout).toMatch(/recording:\s+intact \(\d+ records, signed, key default\)/);
    expect(shown.stdout).toMatch(/#1 {2}POST \/v1\/chat\/completions {2}200 {2}demo-small {2}\d+\/\d+ tokens/);
    expect(shown.stdout).toMatch(/#2 {2}POST \/v1\/chat\/completions {2}200 {2}demo-large {2}stream/);
    const json = JSON.parse((await runCli(['sessions', 'show', session.id, '--json'], { env: env('carol') })).stdout) as SessionDetailJson;
    expect(json.exchanges?.map((x) => x.model)).toEqual(['demo-small', 'demo-large']);
    const bad = await runCli(['sessions', 'show', 'nope'], { env: env('carol') });
    expect(bad.code).toBe(ERRORS.ERR_USAGE.exit);
  });

  it('export writes a HAR file, and an asciicast of the streamed answer to stdout', async () => {
    const file = join(root, 'session.har');
    const har = await runCli(['sessions', 'export', session.id, '--format', 'har', '-o', file], { env: env('carol') });
    expect(har.code, har.stderr).toBe(0);
    expect(har.stderr).toBe(`wrote ${file} (har, recording intact)\n`);
    const doc = JSON.parse(await readFile(file, 'utf8')) as { log: { version: string; entries: { request: { method: string }; response: { status: number } }[] } };
    expect(doc.log.version).toBe('1.2');
    expect(doc.log.entries.map((e) => [e.request.method, e.response.status])).toEqual([
      ['POST', 200],
      ['POST', 200],
    ]);

    const cast = await runCli(['sessions', 'export', session.id, '--format', 'asciicast'], { env: env('carol') });
    expect(cast.code, cast.stderr).toBe(0);
    const [header, ...events] = cast.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(header).toMatchObject({ version: 2 });
    expect((events as [number, string, string][]).map((e) => e[2]).join('')).toBe(`${streamedAnswer.replace(/\n/g, '\r\n')}\r\n`);

    const refused = await runCli(['sessions', 'export', session.id, '--format', 'har', '-o', join(root, 'bob.har')], { env: env('bob') });
    expect(refused.code).toBe(ERRORS.ERR_FORBIDDEN.exit);
  });

  it('tail prints the events of a session as they are recorded, and stops on SIGINT', async () => {
    const tail = spawnCli(['sessions', 'tail', '--interval', '100ms'], { env: env('carol') });
    onTestFinished(() => tail.kill('SIGKILL'));
    // Once the first poll is done, every session that starts is new to the tail.
    await tail.waitForOutput(/following \d+ open session\(s\) for new events; Ctrl-C stops/);
    const client = new OpenAI({ baseURL: `${gateway}/v1/proxy/llm2/v1`, apiKey: tokens.alice!, maxRetries: 0 });
    await client.chat.completions.create({ model: 'demo-tail', messages: [{ role: 'user', content: 'tail me' }] });
    await client.chat.completions.create({ model: 'demo-tail', messages: [{ role: 'user', content: 'and me' }] });
    const out = await tail.waitForOutput(/#2 exchange\.end {2}200 demo-tail/);
    const lines = out.split('\n').filter((l) => l.includes(' ses_'));
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} {2}ses_[0-9a-f]{32} {2}alice@example\.com {2}llm2 {2}session\.start {2}user=alice@example\.com connection=llm2 via=proxy$/);
    // Exchanges are numbered as `sessions show` numbers them (#1, #2), not by record.
    const numbered = lines.filter((l) => / #\d+ exchange\.(request|end) /.test(l)).map((l) => / (#\d+ exchange\.\w+)/.exec(l)![1]);
    expect(numbered).toEqual(['#1 exchange.request', '#1 exchange.end', '#2 exchange.request', '#2 exchange.end']);
    const id = /(ses_[0-9a-f]{32})/.exec(lines[0]!)![1]!;
    const shown = await runCli(['sessions', 'show', id], { env: env('carol') });
    expect(shown.stdout).toMatch(/ {2}#1 {2}POST \/v1\/chat\/completions[\s\S]* {2}#2 {2}POST \/v1\/chat\/completions/);
    // Only the new session: the sealed one from before the tail is not replayed.
    expect(out).not.toContain(session.id);
    tail.kill('SIGINT');
    expect(await tail.exited).toBe(0);
  });
});

describe('sluice audit checkpoints (against the gateway)', () => {
  it('prints the signed checkpoints of the seal log to auditors, as lines or JSON lines, and refuses others', async () => {
    const plain = await runCli(['audit', 'checkpoints'], { env: env('carol') });
    expect(plain.code, plain.stderr).toBe(0);
    const rows = plain.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^ {7}1 {2}[0-9a-f]{64} {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const json = await runCli(['audit', 'checkpoints', '--json', '--since', '0'], { env: env('carol') });
    const cps = json.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { log: string; seq: number; head: string; key: string; signature: string });
    expect(cps[0]).toMatchObject({ log: expect.stringMatching(/^sl_[0-9a-f]{32}$/), seq: 1, head: rows[0]!.split(/\s+/)[2] });
    const later = await runCli(['audit', 'checkpoints', '--since', String(cps.at(-1)!.seq)], { env: env('carol') });
    // A checkpoint may be signed between the two calls (the interval one): then only newer ones are listed.
    if (!/^No checkpoints of seal log sl_[0-9a-f]{32} yet\.$/m.test(later.stdout)) {
      for (const row of later.stdout.trimEnd().split('\n')) expect(Number(row.trim().split(/\s+/)[0])).toBeGreaterThan(cps.at(-1)!.seq);
    }
    const bob = await runCli(['audit', 'checkpoints'], { env: env('bob') });
    expect(bob.code).toBe(ERRORS.ERR_FORBIDDEN.exit);
    expect(bob.stderr).toMatch(/ERR_FORBIDDEN/);
  });
});

/** A copy of the storage directory, taken after the gateway closed. */
async function copyOfData(): Promise<string> {
  const copy = await mkdtemp(join(root, 'copy-'));
  await cp(dataDir, copy, { recursive: true });
  return copy;
}

function eventsOf(dir: string, s: SessionJson): Promise<RecordedEvent[]> {
  return readStoredSession(dir, s.file, keyRingFromSettings({ master_key: masterKey })!);
}

/** `sluice audit verify --all` on a directory, with the public key kept outside it. */
function verifyAll(dir: string, ...more: string[]): ReturnType<typeof runCli> {
  return runCli(['audit', 'verify', '--all', '--public-key', publicKeyFile, '--data-dir', dir, '--key-file', keyFile, ...more], { env: offline });
}

function editIndex(dir: string, sql: string, id: string): void {
  const db = new Database(join(dir, 'index.sqlite'));
  try {
    db.prepare('DELETE FROM session_models WHERE session_id = ?').run(id);
    db.prepare(sql).run(id);
  } finally {
    db.close();
  }
}

async function sealLogLines(dir: string): Promise<string[]> {
  return (await readFile(join(dir, SEAL_LOG_FILE), 'utf8')).trimEnd().split('\n');
}

describe('sluice audit verify (offline)', () => {
  let sessions: SessionJson[];

  beforeAll(async () => {
    const res = await fetch(`${gateway}/v1/sessions`, { headers: { authorization: `Bearer ${tokens.carol}` } });
    sessions = ((await res.json()) as SessionListJson).sessions;
    // An auditor keeps the checkpoints where the gateway cannot reach them.
    const exported = await runCli(['audit', 'checkpoints', '--json'], { env: env('carol') });
    expect(exported.code, exported.stderr).toBe(0);
    checkpointsFile = join(root, 'checkpoints.jsonl');
    await writeFile(checkpointsFile, exported.stdout);
    await gw.stopApp(); // seals the tail test's session; from here on nothing runs but the CLI
  });

  it('passes an untouched directory: one intact line per session and one for the seal log, exit 0', async () => {
    const r = await verifyAll(dataDir);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines).toContain(`${session.id}  intact (${session.records} records, signed)`);
    expect(lines.at(-1)).toBe('seal log  intact (3 entries; signed through entry 2)');
    const one = await runCli(['audit', 'verify', '--public-key', publicKeyFile, session.id, '--data-dir', dataDir], { env: { ...offline, SLUICE_MASTER_KEY: masterKey } });
    expect(one.stdout).toBe(`${session.id}  intact (${session.records} records, signed)\n`);
    const json = JSON.parse((await verifyAll(dataDir, '--json', '--checkpoints', checkpointsFile)).stdout) as {
      ok: boolean;
      sessions: { status: string }[];
      seal_log: { status: string; entries: number; signed_through: number; pinned_through: number };
    };
    expect(json.ok).toBe(true);
    expect(json.sessions.map((s) => s.status)).toEqual(['intact', 'intact']);
    expect(json.seal_log).toMatchObject({ status: 'intact', entries: 3, signed_through: 2, pinned_through: expect.any(Number) });
    expect(json.seal_log.pinned_through).toBeGreaterThanOrEqual(1);
  });

  it('keeps no signing key in the data directory: the public key comes from outside, or verify says where to get it', async () => {
    await expect(access(join(dataDir, 'signing-key.pem'))).rejects.toMatchObject({ code: 'ENOENT' });
    const none = await runCli(['audit', 'verify', '--all', '--data-dir', dataDir, '--key-file', keyFile], { env: offline });
    expect(none.code).toBe(ERRORS.ERR_USAGE.exit);
    expect(none.stderr).toMatch(/No public key: .*signing-key\.pem does not exist .*pass --public-key FILE with the PEM of GET \/v1\/audit\/public-key/);
    // An install that keeps its key in the directory still verifies, with a warning that it proves little.
    const legacy = await copyOfData();
    await cp(publicKeyFile, join(legacy, 'signing-key.pem'));
    const r = await runCli(['audit', 'verify', '--all', '--data-dir', legacy, '--key-file', keyFile], { env: offline });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^warning: the public key is read from the directory being verified/);
  });

  it('names the session and record of a flipped byte and exits with ERR_RECORDING_TAMPERED', async () => {
    const dir = await copyOfData();
    const events = await eventsOf(dir, session);
    const target = events.find((e) => e.type === 'exchange.end')!;
    const handle = await open(join(dir, session.file), 'r+');
    try {
      const at = target.offset + 30;
      const b = Buffer.alloc(1);
      await handle.read(b, 0, 1, at);
      b[0] = b[0]! ^ 0x80;
      await handle.write(b, 0, 1, at);
    } finally {
      await handle.close();
    }
    const r = await verifyAll(dir);
    expect(r.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(r.code).not.toBe(0);
    // Named by the record that holds it (a position, counted as `records` is), not by the event's seq.
    expect(r.stdout).toContain(`${session.id}  broken at record ${target.record}: Record ${target.record} at byte ${target.offset} does not authenticate`);
    expect(r.stdout).toMatch(/ intact \(/); // the other session still passes
    expect(r.stderr).toMatch(/1 session in .* failed verification \(ERR_RECORDING_TAMPERED\)/);
  });

  it('fails a cut file the index or the seal log says was sealed; only with neither is it what a crash leaves', async () => {
    const dir = await copyOfData();
    const events = await eventsOf(dir, session);
    const cutAt = events.find((e) => e.record === 5)!;
    await truncate(join(dir, session.file), cutAt.offset + 7);
    const r = await runCli(['audit', 'verify', '--public-key', publicKeyFile, session.id, '--data-dir', dir, '--key-file', keyFile], { env: offline });
    expect(r.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(r.stdout).toMatch(new RegExp(`^${session.id} {2}broken at record 5: cut or rewritten: the seal log \\(entry 1\\) says the sealed session holds ${session.records} records ending in [0-9a-f]{16}…; the file has 5\\n$`));

    // Without the index (and with it the sessions' data keys), the seal log still says the session was sealed:
    // a file is framed and counted without its key.
    await rm(join(dir, 'index.sqlite'));
    const noIndex = await verifyAll(dir);
    expect(noIndex.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(noIndex.stdout).toContain(`${session.id}  broken at record 5: cut or rewritten`);
    // The other file cannot be decrypted either, but what the seal log pins of it holds.
    expect(noIndex.stdout).toMatch(/ {2}unverifiable: no data key: the index is not available \(\d+ records framed, none decrypted; record count and final hash match the seal log \(entry \d+\)\)\n/);

    // Without the seal log (and its checkpoints) too, nothing vouches for either file: their data keys were
    // in the index. Not checked is not tampered with: unverifiable, exit 1, and no ERR_RECORDING_TAMPERED.
    await rm(join(dir, SEAL_LOG_FILE));
    await rm(join(dir, SEAL_CHECKPOINTS_FILE));
    const neither = await verifyAll(dir);
    expect(neither.code).toBe(1);
    expect(neither.stdout).toContain(`${session.id}  unverifiable: no data key: the index is not available (5 records framed, none decrypted; the file ends inside record 5 at byte`);
    expect(neither.stdout.trimEnd().split('\n').filter((l) => /^ses_[0-9a-f]{32} {2}unverifiable: no data key: the index is not available \(/.test(l))).toHaveLength(2);
    expect(neither.stdout).not.toMatch(/broken/);
    expect(neither.stderr).toMatch(/2 sessions in .* could not be verified \(no data key: the index is not available; verify a copy of storage\.dir with its index\.sqlite\)/);
    expect(neither.stderr).not.toMatch(/ERR_RECORDING_TAMPERED/);
  });

  it('fails a session whose data key was erased from the index, naming it, while the file is untouched', async () => {
    const dir = await copyOfData();
    editIndex(dir, 'DELETE FROM session_keys WHERE session_id = ?', session.id);
    const r = await verifyAll(dir);
    expect(r.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(r.stdout).toContain(`${session.id}  broken at the header: The index holds no data key for session ${session.id}: it was erased, or this is not the index it was recorded with`);
    expect(r.stdout).toMatch(/ intact \(/); // the other session keeps its key
  });

  it('verifies a directory written in format 1, every key in its session headers and no index', async () => {
    const fixture = new URL('../fixtures/recording-v1/', import.meta.url).pathname;
    const dir = await mkdtemp(join(root, 'v1-'));
    await cp(fixture, dir, { recursive: true });
    const row = JSON.parse(await readFile(join(dir, 'index-row.json'), 'utf8')) as { id: string; records: number };
    const r = await runCli(['audit', 'verify', '--all', '--public-key', join(dir, 'public-key.pem'), '--data-dir', dir, '--key-file', join(dir, 'master-key.b64')], { env: offline });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${row.id}  intact (${row.records} records, signed)\nseal log  intact (2 entries; signed through entry 1)\n`);
  });

  it('fails a sealed session cut to 5 records whose index row was deleted, or set to interrupted, naming it', async () => {
    expect(session.records).toBeGreaterThan(5);
    for (const edit of ['DELETE FROM sessions WHERE id = ?', `UPDATE sessions SET status = 'interrupted', records = NULL, final_hash = NULL WHERE id = ?`]) {
      const dir = await copyOfData();
      const events = await eventsOf(dir, session);
      await truncate(join(dir, session.file), events.find((e) => e.record === 5)!.offset);
      editIndex(dir, edit, session.id);
      const r = await verifyAll(dir);
      expect(r.code, edit).toBe(1);
      expect(r.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
      expect(r.stdout).toMatch(new RegExp(`${session.id} {2}broken at record 5: cut or rewritten: the seal log \\(entry 1\\) says the sealed session holds ${session.records} records`));
      expect(r.stderr).toMatch(/1 session in .* failed verification/);
    }
  });

  it('fails --all when a session file was deleted together with its index row', async () => {
    const dir = await copyOfData();
    await rm(join(dir, session.file));
    editIndex(dir, 'DELETE FROM sessions WHERE id = ?', session.id);
    const r = await verifyAll(dir);
    expect(r.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(r.stdout).toContain(`${session.id}  broken: the session file ${session.file} is missing, but the seal log (entry 1) says it was sealed with ${session.records} records (not in the index)`);
  });

  it('calls a session the gateway is still writing open, not tampered: passes without --strict, fails with it as not sealed yet', async () => {
    const dir = await copyOfData();
    const original = await eventsOf(dir, session);
    // A live session as a running gateway leaves it on disk: records written, no checkpoint, indexed as open.
    const openId = `ses_${randomBytes(16).toString('hex')}`;
    const file = session.file.replace(session.id, openId);
    const keyRing = keyRingFromSettings({ master_key: masterKey })!;
    const writer = await SessionWriter.create({ io: nodeRecordingIo, path: join(dir, file), sessionId: openId, created: Date.now(), keyRing, fsync: 'never', fsyncIntervalMs: 0 });
    for (const e of original.slice(0, 4)) await writer.append(e.type, e.fields as never, e.payload);
    await writer.close();
    const db = new Database(join(dir, 'index.sqlite'));
    try {
      const row = db.prepare('SELECT * FROM sessions WHERE id = ?').get(session.id) as Record<string, unknown>;
      const open = { ...row, id: openId, file, status: 'open', ended_at: null, records: null, final_hash: null };
      const columns = Object.keys(open);
      db.prepare(`INSERT INTO sessions (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`).run(open);
      // The gateway keeps a session's wrapped data key in the index from the moment it opens.
      db.prepare('INSERT INTO session_keys (session_id, key_id, wrapped) VALUES (?, ?, ?)').run(openId, writer.wrappedKey.keyId, writer.wrappedKey.wrapped);
    } finally {
      db.close();
    }

    const lenient = await verifyAll(dir);
    expect(lenient.code, lenient.stderr).toBe(0);
    expect(lenient.stdout).toMatch(new RegExp(`^${openId} {2}open: records 0–3 intact so far, ending at byte \\d+$`, 'm'));

    const strict = await verifyAll(dir, '--strict');
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(new RegExp(`^${openId} {2}open: records 0–3 intact so far`, 'm'));
    expect(strict.stderr).toBe(`sluice: --strict: 1 session in ${dir} is not sealed yet (1 open, the gateway is still writing it)\n`);
    expect(`${strict.stdout}${strict.stderr}`).not.toMatch(/tamper|broken/i);
    const json = JSON.parse((await verifyAll(dir, '--strict', '--json')).stdout) as { ok: boolean; sessions: { id: string; status: string; failed: boolean }[] };
    expect(json.ok).toBe(false);
    expect(json.sessions.find((s) => s.id === openId)).toMatchObject({ status: 'open', failed: true });
  });

  it('fails a session rewritten and re-signed with another key (the real one is not in the directory to steal)', async () => {
    const dir = await copyOfData();
    const original = await eventsOf(dir, session);
    const attacker = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
    await rm(join(dir, session.file));
    const keyRing = keyRingFromSettings({ master_key: masterKey })!;
    const writer = await SessionWriter.create({ io: nodeRecordingIo, path: join(dir, session.file), sessionId: session.id, created: Date.now(), keyRing, fsync: 'never', fsyncIntervalMs: 0 });
    for (const e of original.slice(0, 4)) await writer.append(e.type, e.fields as never, e.payload);
    await writer.append('session.end', { reason: 'idle', exchanges: 1 });
    await writer.seal(attacker);
    const r = await verifyAll(dir);
    expect(r.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(r.stdout).toMatch(new RegExp(`${session.id} {2}broken`));
    // Planting the attacker's public key as the directory's own does not help: the seal log's checkpoints refuse it.
    await writeFile(join(dir, 'signing-key.pem'), attacker.publicKeyPem);
    const planted = await runCli(['audit', 'verify', '--all', '--data-dir', dir, '--key-file', keyFile], { env: offline });
    expect(planted.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(planted.stdout).toMatch(/^seal log {2}broken at entry 1: The checkpoint of entry 1 \(line 1 of seals\.checkpoints\) was signed by another key/m);
  });

  it('fails a seal log with an entry removed or altered', async () => {
    const removed = await copyOfData();
    const lines = await sealLogLines(removed);
    await writeFile(join(removed, SEAL_LOG_FILE), `${[lines[0], ...lines.slice(2)].join('\n')}\n`);
    const r = await verifyAll(removed);
    expect(r.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(r.stdout).toMatch(/^seal log {2}broken at entry 1: Entry 1 of the seal log carries seq 2: entries were dropped, inserted or reordered/m);
    expect(r.stderr).toMatch(/and the seal log in .* failed verification/);

    const altered = await copyOfData();
    const entry = JSON.parse(lines[2]!) as { sealed_at: number };
    await writeFile(join(altered, SEAL_LOG_FILE), `${[...lines.slice(0, 2), JSON.stringify({ ...entry, sealed_at: entry.sealed_at + 1 })].join('\n')}\n`);
    const a = await verifyAll(altered);
    expect(a.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(a.stdout).toMatch(/^seal log {2}broken at entry 2: The checkpoint of entry 2 does not match the entry: the seal log was rewritten up to there/m);
  });

  it('catches a tail cut back with its checkpoints and sessions only against checkpoints exported earlier', async () => {
    const dir = await copyOfData();
    const lines = await sealLogLines(dir);
    await writeFile(join(dir, SEAL_LOG_FILE), `${lines[0]}\n`);
    await writeFile(join(dir, SEAL_CHECKPOINTS_FILE), '');
    for (const s of sessions) {
      await rm(join(dir, s.file));
      editIndex(dir, 'DELETE FROM sessions WHERE id = ?', s.id);
    }
    const local = await verifyAll(dir);
    expect(local.code, local.stdout).toBe(0);
    expect(local.stdout).toBe('seal log  intact (1 entry; no checkpoint yet; 1 entry after the last checkpoint, where a cut shows only against an exported checkpoint)\n');
    const pinned = await verifyAll(dir, '--checkpoints', checkpointsFile);
    expect(pinned.code).toBe(ERRORS.ERR_RECORDING_TAMPERED.exit);
    expect(pinned.stdout).toMatch(/^seal log {2}broken at entry \d+: The exported checkpoint covers entries up to \d+, but the seal log ends at entry 0: entries 1–\d+ were cut/m);
  });
});

describe('sluice admin rotate-key', () => {
  it('prints a new key and a master_keys snippet that, pasted into the config, keeps old sessions readable', async () => {
    const r = await runCli(['admin', 'rotate-key', '--id', 'k2', '--json'], { env: offline });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { id: string; key: string; env: string; snippet: string };
    expect(out.id).toBe('k2');
    expect(Buffer.from(out.key, 'base64')).toHaveLength(32);
    expect(out.env).toBe('SLUICE_MASTER_KEY_K2');

    const yaml = `identity:\n  issuer: ${gw.idp.issuer}\n  audience: a\n  cli_client_id: c\n${out.snippet}\n`;
    const config = parseConfigText(yaml, { env: { SLUICE_MASTER_KEY_K2: out.key, SLUICE_MASTER_KEY: masterKey } });
    const ring = keyRingFromSettings(config.storage)!;
    expect(ring.ids).toEqual(['k2', 'default']);

    // The same ring as a key file: sessions wrapped by the old key still verify.
    const ringFile = join(root, 'ring.json');
    await writeFile(ringFile, JSON.stringify([{ id: 'k2', key: out.key }, { id: 'default', key: masterKey }]));
    const v = await runCli(['audit', 'verify', '--public-key', publicKeyFile, session.id, '--data-dir', dataDir, '--key-file', ringFile], { env: offline });
    expect(v.code, v.stderr).toBe(0);

    const plain = await runCli(['admin', 'rotate-key'], { env: offline });
    expect(plain.stdout).toMatch(/^New master key "k-\d{8}-\d{6}"/);
    expect(plain.stdout).toMatch(/\n {2}SLUICE_MASTER_KEY_K_\d{8}_\d{6}=[A-Za-z0-9+/]{43}=\n/);
    expect(plain.stdout).toContain('    - id: default\n      key: ${env:SLUICE_MASTER_KEY}');
  });
});
