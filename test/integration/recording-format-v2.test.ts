/**
 * Upgrading onto a directory written in format 2 (one uncompressed event per record, each session's wrapped
 * key in the index): the gateway, which now writes format 3, serves the old session's verdict, events and
 * exports, and the old and new sessions of the same directory verify side by side.
 */
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyRing } from '../../server/recording/key-ring.js';
import { FILE_MAGIC, FORMAT_VERSION } from '../../server/recording/record-format.js';
import { readSealLog } from '../../server/recording/verify-seal-log.js';
import { sealLogVerdictText, verdictText } from '../../server/recording/verify-storage-dir.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { NewSession } from '../../server/store/store.js';
import type { SessionDetailJson } from '../../shared/sessions-api.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { verifyDirectory } from '../helpers/stored-sessions.js';

const fixture = new URL('../fixtures/recording-v2/', import.meta.url).pathname;

const gateways = gatewayFixture();
let gw: TestGateway;
let app: FastifyInstance;
let dir: string;
let carol: string;
let row: NewSession & { records: number; finalHash: string; endedAt: number; wrappedKey: string };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-v2-'));
  row = JSON.parse(await readFile(join(fixture, 'index-row.json'), 'utf8')) as typeof row;
  // The old directory: its session file, and the index rows the old gateway wrote (the session, and its wrapped data key).
  await mkdir(dirname(join(dir, row.file)), { recursive: true });
  await copyFile(join(fixture, row.file), join(dir, row.file));
  // Its seal log, which the upgraded gateway goes on appending to.
  for (const f of ['seals.log', 'seals.checkpoints']) await copyFile(join(fixture, f), join(dir, f));
  await mkdir(join(dir, 'keys'), { mode: 0o700 });
  await copyFile(join(fixture, 'signing-key.pem'), join(dir, 'keys', 'signing-key.pem'));
  await chmod(join(dir, 'keys', 'signing-key.pem'), 0o600);
  const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
  await store.createSession({ id: row.id, user: row.user, groups: row.groups, connection: row.connection, via: row.via, clientAddress: row.clientAddress, startedAt: row.startedAt, file: row.file, keyId: row.keyId, replica: row.replica });
  await store.putSessionKey(row.id, { keyId: row.keyId, wrapped: Buffer.from(row.wrappedKey, 'base64') });
  await store.closeSession(row.id, { status: 'closed', endedAt: row.endedAt, records: row.records, finalHash: row.finalHash });
  await store.close();
  gw = await gateways.start({
    connections: ({ model }) => [{ name: 'llm', type: 'http', upstream: model.url, headers: { authorization: 'Bearer sk-upstream-only-the-gateway-knows' }, allow_groups: ['ml-eng'], record: { request_body: 'raw', response_body: 'raw' } }],
    config: {
      roles: { auditor: ['security'] },
      storage: { dir, master_key: (await readFile(join(fixture, 'master-key.b64'), 'utf8')).trim(), signing_key: join(dir, 'keys', 'signing-key.pem') },
    },
  });
  app = gw.app;
  carol = await gw.token('carol');
}, 30_000);

afterAll(async () => {
  await app?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function get(url: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const res = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${carol}` } });
  return { status: res.statusCode, body: res.body, headers: res.headers };
}

describe('a format 2 session on a gateway that writes format 3', () => {
  it('is read through the archive: its events with their seq, and its HAR export', async () => {
    expect((await readFile(join(dir, row.file)))[FILE_MAGIC.length]).toBe(2);
    const events = await get(`/v1/sessions/${row.id}/events?payload=false`);
    expect(events.status).toBe(200);
    const lines = events.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; type: string });
    expect(lines.map((l) => [l.seq, l.type])).toEqual(
      ['session.start', 'exchange.request', 'exchange.response', 'exchange.chunk', 'exchange.end', 'session.end', 'session.checkpoint'].map((type, i) => [i, type]),
    );
    const paged = await get(`/v1/sessions/${row.id}/events?payload=false&from_seq=4`);
    expect(paged.body.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([4, 5, 6]);
    const har = await get(`/v1/sessions/${row.id}/export?format=har`);
    expect(har.status).toBe(200);
    expect(har.headers['x-sluice-verify']).toBe('intact');
    expect(har.body).toContain('hello from a v2 file');
    expect(har.body).toContain('an answer kept in format 2');
  });

  it('verifies intact against its index row, beside a session the upgraded gateway records in the current format', async () => {
    const detail = JSON.parse((await get(`/v1/sessions/${row.id}`)).body) as SessionDetailJson;
    expect(detail.verify).toMatchObject({ status: 'intact', records: row.records, problems: [] });
    expect(detail.exchanges).toHaveLength(1);

    const alice = await gw.token('alice');
    const res = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hello from a new file' }] }),
    });
    expect(res.status).toBe(200);
    await res.text();
    const sessions = await gw.sessions();
    const fresh = sessions.find((s) => s.id !== row.id)!;
    expect((await readFile(join(dir, fresh.file)))[FILE_MAGIC.length]).toBe(FORMAT_VERSION);
    const freshDetail = JSON.parse((await get(`/v1/sessions/${fresh.id}`)).body) as SessionDetailJson;
    // Still open: every record so far is good, and it has no checkpoint yet.
    expect(freshDetail.verify.status).toBe('open');
    expect(freshDetail.verify.problems.map((p) => p.kind)).toEqual(['interrupted']);
    expect(freshDetail.exchanges).toHaveLength(1);
  });

  it('verifies offline, as `sluice audit verify --all` does, beside the format 3 session and on one seal log', async () => {
    await gw.stopApp(); // seals the format 3 session into the same seal log
    const publicKey = await readFile(join(fixture, 'public-key.pem'), 'utf8');
    const keyRing = new KeyRing([{ id: 'default', key: Buffer.from((await readFile(join(fixture, 'master-key.b64'), 'utf8')).trim(), 'base64') }]);
    const report = await readSealLog({ dir, publicKey });
    const verdicts = [];
    for await (const v of verifyDirectory({ dir, keyRing, publicKey, sealLog: report })) verdicts.push({ id: v.id, version: (await readFile(join(dir, v.file)))[FILE_MAGIC.length], ...verdictText(v, true) });
    expect(verdicts.sort((a, b) => a.version! - b.version!)).toEqual([
      { id: row.id, version: 2, status: 'intact', text: `intact (${row.records} records, signed)`, failed: false },
      { id: expect.not.stringMatching(row.id), version: FORMAT_VERSION, status: 'intact', text: expect.stringMatching(/^intact \(\d+ records, signed\)$/), failed: false },
    ]);
    expect(sealLogVerdictText(report)).toMatchObject({ failed: false, text: expect.stringMatching(/^intact \(3 entries/) });
    await gw.startApp();
    app = gw.app;
  });
});
