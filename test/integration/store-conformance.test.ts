import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { Review } from '../../server/approval/review.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { SQLITE_MIGRATIONS } from '../../server/store/sqlite-migrations.js';
import { faultyStore } from '../helpers/faulty-store.js';
import { describeStoreConformance, type StoreUnderTest } from '../helpers/store-conformance.js';
import { describeStoreFaults } from '../helpers/store-conformance-faults.js';
import { accessRequest, approval, codeOf, heard, heldRequest, ROOMY, settle, T0 } from '../helpers/store-conformance-reviews.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'sluice-store-'));
}

/** A fresh index file at schema `version`, as a gateway of that version left it, open for the test to fill; removed after the test. */
async function indexAtVersion(version: number): Promise<{ file: string; raw: Database.Database }> {
  const dir = await tempDir();
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'index.sqlite');
  const raw = new Database(file);
  raw.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  SQLITE_MIGRATIONS.slice(0, version).forEach((sql, i) => {
    raw.exec(sql);
    raw.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, 0)').run(i + 1);
  });
  return { file, raw };
}

/** A store on a fresh file, and a second connection to it as another replica would hold. */
async function sqliteOnDisk(): Promise<StoreUnderTest> {
  const dir = await tempDir();
  const file = join(dir, 'index.sqlite');
  return { store: new SqliteStore({ file }), openPeer: async () => new SqliteStore({ file }), dispose: () => rm(dir, { recursive: true, force: true }) };
}

describeStoreConformance('SqliteStore (file, WAL)', sqliteOnDisk);

describeStoreConformance('faultyStore over SqliteStore, no fault armed', async () => {
  const { store, ...rest } = await sqliteOnDisk();
  return { store: faultyStore(store), ...rest };
});

describeStoreFaults('SqliteStore', sqliteOnDisk);

describe('SqliteStore transactions', () => {
  it('applies an approval that reaches min_approvals whole or not at all: a grant that cannot be written undoes it', async () => {
    const dir = await tempDir();
    const file = join(dir, 'index.sqlite');
    const store = new SqliteStore({ file });
    onTestFinished(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    const request = await store.createReview(accessRequest({ minApprovals: 2 }), ROOMY);
    await store.approveReview(request.id, approval('bob'));
    const events = heard(store);
    // The disk fills up between the review's update and the grant's insert.
    const raw = new Database(file);
    raw.exec("CREATE TRIGGER grants_full BEFORE INSERT ON grants BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
    await expect(store.approveReview(request.id, approval('erin'))).rejects.toThrow(/disk is full/);
    expect(await store.getReview(request.id)).toMatchObject({ status: 'pending', approvals: [{ sub: 'bob' }] });
    expect(await store.listGrants()).toEqual([]);
    await settle();
    expect(events).toEqual([]);

    raw.exec('DROP TRIGGER grants_full');
    raw.close();
    const { review, grant } = await store.approveReview(request.id, approval('erin'));
    expect(review.status).toBe('approved');
    expect(await store.listGrants()).toEqual([grant]);
  });
});

describe('SqliteStore on disk', () => {
  it('uses WAL, records its schema version, and keeps sessions across reopen', async () => {
    const dir = await tempDir();
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'nested', 'index.sqlite');
    const first = new SqliteStore({ file });
    expect(first.schemaVersion).toBe(SQLITE_MIGRATIONS.length);
    await first.createSession({
      id: 'ses_1', user: 'alice', groups: [], connection: 'llm', via: 'proxy', clientAddress: '::1',
      startedAt: 1, file: 'sessions/x.rec', keyId: 'default', replica: 'r1',
    });
    await first.close();

    const raw = new Database(file, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.prepare('SELECT version FROM schema_version').all()).toEqual(SQLITE_MIGRATIONS.map((_, i) => ({ version: i + 1 })));
    raw.close();

    const second = new SqliteStore({ file });
    onTestFinished(() => second.close());
    expect((await second.getSession('ses_1'))?.user).toBe('alice');
    expect((await stat(file)).isFile()).toBe(true);
  });

  it('refuses a database from a newer gateway', async () => {
    const dir = await tempDir();
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'index.sqlite');
    await new SqliteStore({ file }).close();
    const raw = new Database(file);
    raw.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, 0)').run(SQLITE_MIGRATIONS.length + 1);
    raw.close();
    expect(() => new SqliteStore({ file })).toThrow(/newer than this gateway knows/);
  });
});

describe('SqliteStore: reviews in the index', () => {
  it('keeps reviews, approvals, grants and tunnel slots across a reopen', async () => {
    const dir = await tempDir();
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'index.sqlite');
    const first = new SqliteStore({ file });
    const request = await first.createReview(accessRequest(), ROOMY);
    const { review, grant } = await first.approveReview(request.id, approval('bob'));
    const pending = await first.createReview(heldRequest({ resend: { binding: 'b1', windowMs: 60_000 } }), ROOMY);
    await first.acquireTunnelSlot('alice', 'r1', 1);
    await first.close();

    const second = new SqliteStore({ file });
    onTestFinished(() => second.close());
    expect(await second.getReview(request.id)).toEqual(review);
    expect(await second.activeGrant('alice', 'prod-db', T0 + 2000)).toEqual(grant);
    expect(await second.listReviews({ binding: 'b1' })).toEqual([pending]);
    expect(await second.acquireTunnelSlot('alice', 'r1', 1)).toBeUndefined();
    expect(await second.clearTunnelSlots('r1')).toBe(1);
  });

  it('migrates an index of version 3: the review tables nothing wrote are replaced, sessions are kept', async () => {
    const { file, raw } = await indexAtVersion(3);
    raw.prepare(`INSERT INTO sessions (id, user, groups, connection, via, client_address, started_at, file, key_id, replica, status)
      VALUES ('ses_1', 'alice', '[]', 'llm', 'proxy', '::1', 1, 'sessions/x.rec', 'default', 'r1', 'closed')`).run();
    raw.close();

    const store = new SqliteStore({ file });
    onTestFinished(() => store.close());
    expect(store.schemaVersion).toBe(SQLITE_MIGRATIONS.length);
    expect((await store.getSession('ses_1'))?.user).toBe('alice');
    const r = await store.createReview(heldRequest(), ROOMY);
    expect(await store.getReview(r.id)).toEqual(r);
  });
});

describe('SqliteStore: the replica holding a review\'s caller', () => {
  it('migrates an index of version 4: its pending reviews hold no replica, so no sweep abandons them', async () => {
    const { file, raw } = await indexAtVersion(4);
    const old: Review = { ...heldRequest(), status: 'pending', approvals: [] };
    raw.prepare(`INSERT INTO reviews (id, kind, status, requester, connection, binding, created_at, expires_at, doc) VALUES (?, ?, 'pending', ?, ?, NULL, ?, ?, ?)`)
      .run(old.id, old.kind, old.requester.sub, old.connection, old.createdAt, old.expiresAt, JSON.stringify(old));
    raw.close();

    const store = new SqliteStore({ file });
    onTestFinished(() => store.close());
    expect(store.schemaVersion).toBe(SQLITE_MIGRATIONS.length);
    expect(await store.getReview(old.id)).toEqual(old);
    expect(await store.replicasWithOpenState()).toEqual([]);
    const held = await store.createReview(heldRequest({ replica: 'r1' }), ROOMY);
    expect(await store.listReviews({ replica: 'r1' })).toEqual([held]);
  });

  it('migrates an index of version 9: audit events waiting one row each become runs of one, in order, their seq kept', async () => {
    const { file, raw } = await indexAtVersion(9);
    const insert = raw.prepare('INSERT INTO audit_outbox (sink, doc) VALUES (?, ?)');
    for (const [sink, n] of [['siem', 1], ['file', 2], ['siem', 3], ['file', 4]] as const) insert.run(sink, JSON.stringify({ n }));
    raw.prepare('DELETE FROM audit_outbox WHERE sink = ?').run('file');
    raw.close();

    const store = new SqliteStore({ file });
    onTestFinished(() => store.close());
    expect(store.schemaVersion).toBe(SQLITE_MIGRATIONS.length);
    expect(await store.auditOutboxDepth()).toBe(2);
    const rows = await store.claimAuditBatch('siem', 'r1', 1, 30_000, 100);
    expect(rows).toEqual([
      { seq: 1, sink: 'siem', docs: ['{"n":1}'] },
      { seq: 3, sink: 'siem', docs: ['{"n":3}'] },
    ]);
    // AUTOINCREMENT goes on past the highest seq ever handed out (4, acked and deleted), never reusing one.
    await store.appendAuditEvents([{ sink: 'siem', docs: ['{"n":5}'] }], 100_000);
    const next = await store.claimAuditBatch('siem', 'r1', 2, 30_000, 100);
    expect(next!.at(-1)).toEqual({ seq: 5, sink: 'siem', docs: ['{"n":5}'] });
  });
});

/** The review database of gateways before reviews joined the index, as they left it. */
const LEGACY_SCHEMA = `
CREATE TABLE IF NOT EXISTS reviews (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, requester TEXT NOT NULL, connection TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, doc TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS grants (
  id TEXT PRIMARY KEY, review_id TEXT NOT NULL UNIQUE, sub TEXT NOT NULL, connection TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, doc TEXT NOT NULL
) STRICT;
`;

function writeLegacyReviewsDb(file: string, reviews: Review[], grants: NonNullable<Awaited<ReturnType<SqliteStore['activeGrant']>>>[]): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(LEGACY_SCHEMA);
  for (const r of reviews) {
    db.prepare('INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(r.id, r.kind, r.status, r.requester.sub, r.connection, r.createdAt, r.expiresAt, JSON.stringify(r));
  }
  for (const g of grants) db.prepare('INSERT INTO grants VALUES (?, ?, ?, ?, ?, ?, ?)').run(g.id, g.reviewId, g.sub, g.connection, g.createdAt, g.expiresAt, JSON.stringify(g));
  // Left open with its WAL, as a gateway that was killed leaves it; the import reads through the WAL.
  onTestFinished(() => void db.close());
}

describe('SqliteStore: importing reviews.db', () => {
  it('carries pending reviews and standing grants over once, and renames reviews.db so it is never read again', async () => {
    const dir = await tempDir();
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const waiting: Review = { ...heldRequest({ resend: { binding: 'b1', windowMs: 60_000 } }), status: 'pending', approvals: [] };
    const granted: Review = { ...accessRequest(), status: 'approved', approvals: [approval('bob')], resolvedAt: T0 + 1000, resolvedBy: { sub: 'bob' } };
    const grant = { id: 'g_000000000000000000000001', reviewId: granted.id, sub: 'alice', connection: 'prod-db', approvedBy: ['bob'], createdAt: T0 + 1000, expiresAt: T0 + 7_201_000 };
    writeLegacyReviewsDb(join(dir, 'reviews.db'), [waiting, granted], [grant]);

    const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
    onTestFinished(() => store.close());
    expect(await store.getReview(waiting.id)).toEqual(waiting);
    expect(await store.getReview(granted.id)).toEqual(granted);
    expect(await store.listReviews({ binding: 'b1' })).toEqual([waiting]);
    expect(await store.activeGrant('alice', 'prod-db', T0 + 2000)).toEqual(grant);
    // The imported pending review counts toward its requester's limit, and can still be decided.
    expect(await codeOf(store.createReview(heldRequest(), { perUser: 1, total: 10 }))).toBe('ERR_REVIEW_LIMIT');
    const events = heard(store);
    expect((await store.approveReview(waiting.id, approval('erin'))).review.status).toBe('approved');
    await settle();
    expect(events.map((e) => e.type)).toEqual(['review.approved']);

    const names = await readdir(dir);
    expect(names).not.toContain('reviews.db');
    expect(names).toContain('reviews.db.imported');
    await store.close();
    // A second open imports nothing again: the decision made since stands.
    const again = new SqliteStore({ file: join(dir, 'index.sqlite') });
    onTestFinished(() => again.close());
    expect((await again.getReview(waiting.id))?.status).toBe('approved');
    expect(await again.listGrants()).toEqual([grant]);
  });

  it('refuses to open beside a reviews.db it cannot read, and leaves the file where it is', async () => {
    const dir = await tempDir();
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'reviews.db'), 'not a database, but a file someone put here'.repeat(100));
    expect(() => new SqliteStore({ file: join(dir, 'index.sqlite') })).toThrow(/reviews\.db cannot be imported into the index/);
    expect(existsSync(join(dir, 'reviews.db'))).toBe(true);
  });
});
