/**
 * The Store conformance suite against a real PostgreSQL: each test its own database, and the peer a second
 * `PostgresStore` (its own pool and listener) on it, as another replica holds one, so the suite's races run
 * between two replicas for real. Then what only Postgres has: migration under its lock, the refusal of a
 * newer schema, and the review feed across replicas.
 */
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ReviewEvent } from '../../server/approval/review-feed.js';
import { LOCKS, migratePostgres, POSTGRES_MIGRATIONS } from '../../server/store/postgres-migrations.js';
import { PostgresStore } from '../../server/store/postgres-store.js';
import { faultyStore } from '../helpers/faulty-store.js';
import { postgresFixture } from '../helpers/postgres.js';
import { describeStoreConformance, type StoreUnderTest } from '../helpers/store-conformance.js';
import { describeStoreFaults } from '../helpers/store-conformance-faults.js';
import { approval, heard, heldRequest, ROOMY, T0 } from '../helpers/store-conformance-reviews.js';

const postgres = postgresFixture();

/** A short poll, so a test of the re-read does not wait a second. */
const FAST_POLL = 50;

async function onFreshDatabase(): Promise<StoreUnderTest> {
  const url = await postgres.database();
  return { store: await PostgresStore.open({ url }), openPeer: () => PostgresStore.open({ url }) };
}

/** A store on `url`, closed when the test finishes. */
async function openStore(url: string, options: { feedPollIntervalMs?: number } = {}): Promise<PostgresStore> {
  const store = await PostgresStore.open({ url, ...options });
  onTestFinished(() => store.close());
  return store;
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Resolves once `events` holds `n` events, or rejects after `ms`. */
async function eventsArrive(events: ReviewEvent[], n: number, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (events.length < n) {
    if (Date.now() > deadline) throw new Error(`${events.length} of ${n} events arrived`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describeStoreConformance('PostgresStore (two replicas, one database)', onFreshDatabase);

describeStoreConformance('faultyStore over PostgresStore, no fault armed', async () => {
  const { store, ...rest } = await onFreshDatabase();
  return { store: faultyStore(store), ...rest };
});

describeStoreFaults('PostgresStore', onFreshDatabase);

describe('PostgresStore schema', () => {
  it('migrates once when replicas open the same empty database at the same moment', async () => {
    const url = await postgres.database();
    const stores = await Promise.all(Array.from({ length: 4 }, () => openStore(url)));
    const versions = await query<{ version: number }>(url, 'SELECT version FROM schema_version ORDER BY version');
    expect(versions).toEqual(POSTGRES_MIGRATIONS.map((_, i) => ({ version: i + 1 })));
    for (const store of stores) expect(await store.schemaVersion()).toBe(POSTGRES_MIGRATIONS.length);
    // Each works on the one schema.
    await stores[0]!.createReview(heldRequest(), ROOMY);
    expect(await stores[3]!.listReviews()).toHaveLength(1);
  });

  it('serializes migrations on the advisory lock: a second migrator waits for the first to commit, then finds nothing to do', async () => {
    const url = await postgres.database();
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    onTestFinished(() => holder.end());
    // Another replica in the middle of migrating: it holds the lock and has created the first table.
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCKS.app, LOCKS.migrate]);
    await holder.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    const pool = new pg.Pool({ connectionString: url });
    onTestFinished(() => pool.end());
    let done = false;
    const second = migratePostgres(pool).then((v) => ((done = true), v));
    await new Promise((r) => setTimeout(r, 300));
    expect(done).toBe(false);
    // The first finishes: the whole schema, recorded, committed.
    for (const [i, migration] of POSTGRES_MIGRATIONS.entries()) {
      await holder.query(migration);
      await holder.query('INSERT INTO schema_version VALUES ($1, 0)', [i + 1]);
    }
    await holder.query('COMMIT');
    expect(await second).toBe(POSTGRES_MIGRATIONS.length);
    expect(await query(url, 'SELECT version, applied_at FROM schema_version ORDER BY version')).toEqual(POSTGRES_MIGRATIONS.map((_, i) => ({ version: i + 1, applied_at: '0' })));
  });

  it('refuses to open a database whose schema is newer than it knows, and changes nothing in it', async () => {
    const url = await postgres.database();
    await (await PostgresStore.open({ url })).close();
    await query(url, 'INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)', [POSTGRES_MIGRATIONS.length + 1]);
    await expect(PostgresStore.open({ url })).rejects.toThrow(`schema version ${POSTGRES_MIGRATIONS.length + 1}, newer than this gateway knows (${POSTGRES_MIGRATIONS.length})`);
    expect(await query(url, 'SELECT max(version) AS v FROM schema_version')).toEqual([{ v: POSTGRES_MIGRATIONS.length + 1 }]);
  });

  it('keeps times in milliseconds beyond 32 bits, and sessions across a reopen', async () => {
    const url = await postgres.database();
    const first = await PostgresStore.open({ url });
    const startedAt = 4_102_444_800_123; // 2100-01-01, in milliseconds
    await first.createSession({ id: 'ses_1', user: 'alice', groups: ['a'], connection: 'llm', via: 'proxy', clientAddress: '::1', startedAt, file: 'f', keyId: 'k', replica: 'r1' });
    await first.close();
    const second = await openStore(url);
    expect(await second.getSession('ses_1')).toMatchObject({ user: 'alice', startedAt, groups: ['a'] });
  });
});

describe('PostgresStore review feed across replicas', () => {
  it('delivers a change made on one replica to the other\'s listeners, once, with who and when', async () => {
    const url = await postgres.database();
    const a = await openStore(url);
    const b = await openStore(url);
    const onA = heard(a);
    const onB = heard(b);
    const r = await a.createReview(heldRequest({ minApprovals: 2 }), ROOMY);
    await b.approveReview(r.id, approval('bob', T0 + 1000));
    const { review } = await a.approveReview(r.id, approval('erin', T0 + 2000));
    await eventsArrive(onA, 3);
    await eventsArrive(onB, 3);
    // Settled: nothing arrives twice, through the notification and the poll both.
    await new Promise((r) => setTimeout(r, 1200));
    for (const events of [onA, onB]) {
      expect(events.map((e) => [e.type, e.actor?.sub, e.at])).toEqual([
        ['review.created', undefined, T0],
        ['review.approval', 'bob', T0 + 1000],
        ['review.approved', 'erin', T0 + 2000],
      ]);
    }
    expect(onB[2]!.review).toEqual(review);
  });

  it('a lost notification only delays: the periodic re-read delivers what committed without one', async () => {
    const url = await postgres.database();
    const listening = await openStore(url, { feedPollIntervalMs: FAST_POLL });
    const events = heard(listening);
    // A change committed with its outbox row but no NOTIFY, as when the notification is lost.
    const writer = await openStore(url);
    const r = await writer.createReview(heldRequest(), ROOMY);
    const lost: ReviewEvent = { type: 'review.rejected', review: { ...r, status: 'rejected', resolvedAt: T0 + 5 }, at: T0 + 5 };
    await query(url, 'INSERT INTO review_events (doc) VALUES ($1)', [JSON.stringify(lost)]);
    await eventsArrive(events, 2);
    expect(events.map((e) => e.type)).toEqual(['review.created', 'review.rejected']);
  });

  it('keeps delivering after its listening connection is cut, and hears what committed meanwhile', async () => {
    const url = await postgres.database();
    const listening = await openStore(url);
    const events = heard(listening);
    const writer = await openStore(url);
    await query(url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()`);
    const r = await writer.createReview(heldRequest(), ROOMY);
    await writer.resolveReview(r.id, { status: 'rejected', at: T0 + 1, by: { sub: 'bob' } });
    await eventsArrive(events, 2);
    expect(events.map((e) => e.type)).toEqual(['review.created', 'review.rejected']);
  });
});

describe('PostgresStore while its database is away', () => {
  it('refuses with ERR_STORE_UNAVAILABLE while the server is down, and works again, feed included, once it is back', async () => {
    const url = await postgres.database();
    const store = await openStore(url, { feedPollIntervalMs: FAST_POLL });
    const peer = await openStore(url);
    const events = heard(store);
    const r = await peer.createReview(heldRequest(), ROOMY);
    await eventsArrive(events, 1);

    await postgres.stop();
    try {
      const calls = [
        store.getReview(r.id),
        store.createReview(heldRequest(), ROOMY),
        store.approveReview(r.id, approval('bob')),
        store.acquireTunnelSlot('alice', 'r1', 3),
        store.createSession({ id: 'ses_down', user: 'alice', groups: [], connection: 'llm', via: 'proxy', clientAddress: '::1', startedAt: T0, file: 'f', keyId: 'k', replica: 'r1' }),
      ];
      for (const refused of await Promise.allSettled(calls)) {
        expect(refused.status).toBe('rejected');
        expect((refused as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE', status: 503 });
      }
    } finally {
      await postgres.start();
    }

    // The same stores, without a reopen: their pools connect again, the listener too.
    expect(await store.getReview(r.id)).toMatchObject({ status: 'pending', approvals: [] });
    expect(await store.getSession('ses_down')).toBeUndefined();
    await peer.approveReview(r.id, approval('bob'));
    await eventsArrive(events, 2);
    expect(events.map((e) => e.type)).toEqual(['review.created', 'review.approved']);
  });
});
