/**
 * Upgrading onto a directory written in an older recording format: format 1 (each session's wrapped key in
 * its own header) and format 2 (one uncompressed event per record, the wrapped key in the index). The
 * gateway, which now writes format 3, starts on the directory with the key it was written with (proved
 * against the old session, there being no key canary yet), serves the old session's verdict, events and
 * exports through the archive, and the old and new sessions of one directory verify side by side.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FILE_MAGIC, FORMAT_VERSION } from '../../server/recording/record-format.js';
import { readSealLog } from '../../server/recording/verify-seal-log.js';
import { sealLogVerdictText, verdictText } from '../../server/recording/verify-storage-dir.js';
import type { SessionDetailJson } from '../../shared/sessions-api.js';
import { gatewayFixture, modelConnection, type GatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { olderFormatSession, olderStorageDir, type OlderFormat, type OlderFormatSession } from '../helpers/older-format-session.js';
import { verifyDirectory } from '../helpers/stored-sessions.js';

interface Upgraded {
  readonly gw: TestGateway;
  readonly older: OlderFormatSession;
  readonly dir: string;
  /** GET through the running app as carol, an auditor. */
  get(url: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }>;
}

/** A gateway of today started on the directory a gateway of format `version` left, its bodies recorded raw. */
async function upgradedGateway(gateways: GatewayFixture, version: OlderFormat): Promise<Upgraded> {
  const older = await olderFormatSession(version);
  const dir = await mkdtemp(join(tmpdir(), `sluice-v${version}-`));
  const storage = await olderStorageDir(older, dir);
  const gw = await gateways.start({
    connections: ({ model }) => [modelConnection(model, { record: { request_body: 'raw', response_body: 'raw' } })],
    config: { roles: { auditor: ['security'] }, storage },
  });
  const carol = await gw.token('carol');
  return {
    gw,
    older,
    dir,
    async get(url) {
      const res = await gw.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${carol}` } });
      return { status: res.statusCode, body: res.body, headers: res.headers };
    },
  };
}

const OLDER_FORMATS = [
  { version: 1, keyKept: 'with no key row: its key is in its header' },
  { version: 2, keyKept: 'and the key row it wrote' },
] as const;

describe.each(OLDER_FORMATS)('a format $version session on a gateway that writes format 3', ({ version, keyKept }) => {
  const gateways = gatewayFixture();
  let up: Upgraded;
  beforeAll(async () => {
    up = await upgradedGateway(gateways, version);
  }, 30_000);
  afterAll(async () => {
    if (up) await rm(up.dir, { recursive: true, force: true });
  });

  it('is read through the archive: its events with their seq, and its HAR export', async () => {
    const { row } = up.older;
    expect((await readFile(join(up.dir, row.file)))[FILE_MAGIC.length]).toBe(version);
    const events = await up.get(`/v1/sessions/${row.id}/events?payload=false`);
    expect(events.status).toBe(200);
    const lines = events.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; type: string });
    // One event per record before format 3: each event's seq is its record's position.
    expect(lines.map((l) => [l.seq, l.type])).toEqual(
      ['session.start', 'exchange.request', 'exchange.response', 'exchange.chunk', 'exchange.end', 'session.end', 'session.checkpoint'].map((type, i) => [i, type]),
    );
    const paged = await up.get(`/v1/sessions/${row.id}/events?payload=false&from_seq=4`);
    expect(paged.body.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([4, 5, 6]);
    const har = await up.get(`/v1/sessions/${row.id}/export?format=har`);
    expect(har.status).toBe(200);
    expect(har.headers['x-sluice-verify']).toBe('intact');
    expect(har.body).toContain(`hello from a v${version} file`);
  });

  it(`verifies intact against the index row the old gateway wrote, ${keyKept}`, async () => {
    const { row } = up.older;
    const detail = JSON.parse((await up.get(`/v1/sessions/${row.id}`)).body) as SessionDetailJson;
    expect(detail.verify).toMatchObject({ status: 'intact', records: row.records, problems: [] });
    expect(detail.exchanges).toHaveLength(1);
  });
});

describe('a format 2 session beside one the upgraded gateway records in format 3', () => {
  const gateways = gatewayFixture();
  let up: Upgraded;
  beforeAll(async () => {
    up = await upgradedGateway(gateways, 2);
  }, 30_000);
  afterAll(async () => {
    if (up) await rm(up.dir, { recursive: true, force: true });
  });

  it('keeps its answer, and the new session is written in the current format and reads as open', async () => {
    const { gw, older } = up;
    expect((await up.get(`/v1/sessions/${older.row.id}/export?format=har`)).body).toContain('an answer kept in format 2');
    const alice = await gw.token('alice');
    const res = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hello from a new file' }] }),
    });
    expect(res.status).toBe(200);
    await res.text();
    const sessions = await gw.sessions();
    const fresh = sessions.find((s) => s.id !== older.row.id)!;
    expect((await readFile(join(up.dir, fresh.file)))[FILE_MAGIC.length]).toBe(FORMAT_VERSION);
    const freshDetail = JSON.parse((await up.get(`/v1/sessions/${fresh.id}`)).body) as SessionDetailJson;
    // Still open: every record so far is good, and it has no checkpoint yet.
    expect(freshDetail.verify.status).toBe('open');
    expect(freshDetail.verify.problems.map((p) => p.kind)).toEqual(['interrupted']);
    expect(freshDetail.exchanges).toHaveLength(1);
  });

  it('verifies offline, as `sluice audit verify --all` does, beside the format 3 session and on one seal log', async () => {
    const { gw, older, dir } = up;
    await gw.stopApp(); // seals the format 3 session into the same seal log
    const publicKey = await readFile(join(older.fixture, 'public-key.pem'), 'utf8');
    const report = await readSealLog({ dir, publicKey });
    const verdicts = [];
    for await (const v of verifyDirectory({ dir, keyRing: older.keyRing, publicKey, sealLog: report })) verdicts.push({ id: v.id, version: (await readFile(join(dir, v.file)))[FILE_MAGIC.length], ...verdictText(v, true) });
    expect(verdicts.sort((a, b) => a.version! - b.version!)).toEqual([
      { id: older.row.id, version: 2, status: 'intact', text: `intact (${older.row.records} records, signed)`, failed: false },
      { id: expect.not.stringMatching(older.row.id), version: FORMAT_VERSION, status: 'intact', text: expect.stringMatching(/^intact \(\d+ records, signed\)$/), failed: false },
    ]);
    expect(sealLogVerdictText(report)).toMatchObject({ failed: false, text: expect.stringMatching(/^intact \(3 entries/) });
    await gw.startApp();
  });
});
