/**
 * Upgrading onto a directory written in format 1 (each session's wrapped key in its own header): the gateway
 * starts on it with the key it was written with (proved against the old session's header, there being no key
 * canary yet), and serves the old session's verdict, events and exports through the archive.
 */
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FILE_MAGIC } from '../../server/recording/record-format.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { NewSession } from '../../server/store/store.js';
import type { SessionDetailJson } from '../../shared/sessions-api.js';
import { gatewayFixture } from '../helpers/gateway.js';

const fixture = new URL('../fixtures/recording-v1/', import.meta.url).pathname;

const gateways = gatewayFixture();
let app: FastifyInstance;
let dir: string;
let carol: string;
let row: NewSession & { records: number; finalHash: string; endedAt: number };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-v1-'));
  row = JSON.parse(await readFile(join(fixture, 'index-row.json'), 'utf8')) as typeof row;
  // The old directory: its session file, and the index row the old gateway wrote (with no key row: the key is in the file).
  await mkdir(dirname(join(dir, row.file)), { recursive: true });
  await copyFile(join(fixture, row.file), join(dir, row.file));
  // The signing key that sealed it, kept outside the directory as storage.signing_key wants.
  await mkdir(join(dir, 'keys'), { mode: 0o700 });
  await copyFile(join(fixture, 'signing-key.pem'), join(dir, 'keys', 'signing-key.pem'));
  await chmod(join(dir, 'keys', 'signing-key.pem'), 0o600);
  const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
  await store.createSession({ id: row.id, user: row.user, groups: row.groups, connection: row.connection, via: row.via, clientAddress: row.clientAddress, startedAt: row.startedAt, file: row.file, keyId: row.keyId, replica: row.replica });
  await store.closeSession(row.id, { status: 'closed', endedAt: row.endedAt, records: row.records, finalHash: row.finalHash });
  await store.close();
  // No key canary yet: the start proves the master key against the old session's header.
  const gw = await gateways.start({
    connections: () => [{ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] }],
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

describe('a format 1 session on an upgraded gateway', () => {
  it('is read through the archive: its events and its HAR export', async () => {
    expect((await readFile(join(dir, row.file)))[FILE_MAGIC.length]).toBe(1);
    const events = await get(`/v1/sessions/${row.id}/events?payload=false`);
    expect(events.status).toBe(200);
    const types = events.body
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { type: string }).type);
    expect(types).toEqual(['session.start', 'exchange.request', 'exchange.response', 'exchange.chunk', 'exchange.end', 'session.end', 'session.checkpoint']);
    const har = await get(`/v1/sessions/${row.id}/export?format=har`);
    expect(har.status).toBe(200);
    expect(har.headers['x-sluice-verify']).toBe('intact');
    expect(har.body).toContain('hello from a v1 file');
  });

  it('verifies intact against the index row the old gateway wrote, with no key row: its key is in its header', async () => {
    const detail = JSON.parse((await get(`/v1/sessions/${row.id}`)).body) as SessionDetailJson;
    expect(detail.verify).toMatchObject({ status: 'intact', records: row.records, problems: [] });
    expect(detail.exchanges).toHaveLength(1);
  });
});
