import type pg from 'pg';
import { inTransaction } from './postgres-pool.js';

/**
 * Schema of the Postgres store, one entry per version; released entries are never edited, only appended to.
 * Times are BIGINT milliseconds, as the contract speaks them. Keys that are compared or sorted (ids,
 * replicas, `resend_of` ranges) are COLLATE "C": byte order, as SQLite compares, whatever collation the
 * operator's database defaults to (in en_US, punctuation is ignored, and `ses_…#` .. `ses_…$` would not be
 * the range of one session's re-sends). Documents (reviews, grants, events) are TEXT holding JSON, not
 * JSONB: JSONB refuses the `\u0000` escape a requester's reason may carry.
 */
export const POSTGRES_MIGRATIONS: readonly string[] = [
  // 1: everything the store holds, as SQLite's version 5 holds it.
  `
  CREATE TABLE sessions (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_sub TEXT NOT NULL,
    email TEXT,
    groups TEXT NOT NULL,
    client_id TEXT,
    connection TEXT NOT NULL,
    via TEXT NOT NULL,
    reason TEXT,
    client_address TEXT NOT NULL,
    cli_version TEXT,
    resend_of TEXT COLLATE "C",
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    file TEXT NOT NULL,
    key_id TEXT NOT NULL,
    replica TEXT COLLATE "C" NOT NULL,
    status TEXT NOT NULL,
    records BIGINT,
    final_hash TEXT,
    requests BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    bytes_up BIGINT NOT NULL DEFAULT 0,
    bytes_down BIGINT NOT NULL DEFAULT 0,
    denied BIGINT NOT NULL DEFAULT 0,
    held BIGINT NOT NULL DEFAULT 0,
    masked BIGINT NOT NULL DEFAULT 0,
    tokens_prompt BIGINT NOT NULL DEFAULT 0,
    tokens_completion BIGINT NOT NULL DEFAULT 0,
    tokens_total BIGINT NOT NULL DEFAULT 0,
    last_status INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX sessions_by_start ON sessions (started_at DESC, id DESC);
  CREATE INDEX sessions_by_user ON sessions (user_sub, started_at DESC);
  CREATE INDEX sessions_by_connection ON sessions (connection, started_at DESC);
  CREATE INDEX sessions_by_status ON sessions (status, replica);
  CREATE INDEX sessions_by_resend_of ON sessions (resend_of);
  CREATE TABLE session_models (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (session_id, model)
  );
  CREATE INDEX session_models_by_model ON session_models (model);
  CREATE TABLE session_keys (
    session_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL
  );
  CREATE TABLE replicas (
    id TEXT COLLATE "C" PRIMARY KEY,
    seen_at BIGINT NOT NULL
  );
  CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
  );
  CREATE TABLE reviews (
    id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    requester TEXT NOT NULL,
    connection TEXT NOT NULL,
    binding TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    replica TEXT COLLATE "C",
    doc TEXT NOT NULL
  );
  CREATE INDEX reviews_pending ON reviews (status, expires_at);
  CREATE INDEX reviews_by_requester ON reviews (requester, status);
  CREATE INDEX reviews_by_created ON reviews (created_at);
  CREATE INDEX reviews_by_replica ON reviews (replica, status);
  CREATE TABLE grants (
    id TEXT COLLATE "C" PRIMARY KEY,
    review_id TEXT NOT NULL UNIQUE,
    sub TEXT NOT NULL,
    connection TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    doc TEXT NOT NULL
  );
  CREATE INDEX grants_active ON grants (sub, connection, expires_at);
  CREATE TABLE tunnel_slots (
    id TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    replica TEXT COLLATE "C" NOT NULL
  );
  CREATE INDEX tunnel_slots_by_sub ON tunnel_slots (sub);
  CREATE INDEX tunnel_slots_by_replica ON tunnel_slots (replica);
  -- The review feed's outbox: every review change, in commit order (postgres-review-feed.ts).
  CREATE TABLE review_events (
    seq BIGSERIAL PRIMARY KEY,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    doc TEXT NOT NULL
  );
  `,
  // 2: quota counters, one row per key and window.
  `
  CREATE TABLE quota_counters (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
  );
  `,
  // 3: quota slots, one row per call in flight under a `concurrent_streams` limit.
  `
  CREATE TABLE quota_slots (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    replica TEXT COLLATE "C" NOT NULL
  );
  CREATE INDEX quota_slots_by_key ON quota_slots (key);
  CREATE INDEX quota_slots_by_replica ON quota_slots (replica);
  `,
  // 4: the audit outbox, one row per event and sink until the sink has it.
  `
  CREATE TABLE audit_outbox (
    seq BIGSERIAL PRIMARY KEY,
    sink TEXT NOT NULL,
    doc TEXT NOT NULL
  );
  CREATE INDEX audit_outbox_by_sink ON audit_outbox (sink, seq);
  `,
  // 5: each model's share of a session (exchanges answered, tokens), for usage by model.
  `
  ALTER TABLE session_models ADD COLUMN requests BIGINT NOT NULL DEFAULT 0;
  ALTER TABLE session_models ADD COLUMN tokens_prompt BIGINT NOT NULL DEFAULT 0;
  ALTER TABLE session_models ADD COLUMN tokens_completion BIGINT NOT NULL DEFAULT 0;
  `,
  // 6: the audit outbox keeps one row per run of events for a sink (JSON lines in docs), so a flush
  // of many events costs one row; rows waiting from version 4 are runs of one.
  `
  ALTER TABLE audit_outbox RENAME COLUMN doc TO docs;
  ALTER TABLE audit_outbox ADD COLUMN events INTEGER NOT NULL DEFAULT 1 CHECK (events > 0);
  ALTER TABLE audit_outbox ALTER COLUMN events DROP DEFAULT;
  DROP INDEX audit_outbox_by_sink;
  CREATE INDEX audit_outbox_by_sink ON audit_outbox (sink, seq) INCLUDE (events);
  `,
];

/**
 * Advisory lock keys of the store (two-int form: the first names sluice, the second the purpose), so they
 * cannot meet another application's locks on a shared database.
 */
export const LOCKS = Object.freeze({
  app: 0x51c3,
  /** Held by the transaction that migrates. */
  migrate: 1,
  /** Held while pending reviews are counted and one is inserted: limits hold across replicas. */
  reviewLimits: 2,
  /** Held from an event's insert to its commit, so events commit in the order of their `seq`. */
  feed: 3,
  /** Held by an audit outbox append until it commits, so rows commit in the order of their `seq`. */
  auditOutbox: 4,
  /** Tunnel slots: the second key is a hash of the `sub`, in its own class. */
  tunnelSlots: 0x51c4,
  /** Quota slots: the second key is a hash of the quota key, in its own class. */
  quotaSlots: 0x51c5,
});

/** The schema version the database is at; 0 when it has none. */
export async function schemaVersion(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ v: number | null }>(`SELECT max(version) AS v FROM schema_version`);
  return rows[0]?.v ?? 0;
}

/**
 * Applies every migration newer than the database, all in one transaction under a transaction-level
 * advisory lock: replicas starting together queue on the lock, and those after the first find nothing to do.
 * Refuses a database whose schema is newer than this gateway knows (a newer replica migrated it): the old
 * code would misread it.
 */
export async function migratePostgres(pool: pg.Pool, migrations: readonly string[] = POSTGRES_MIGRATIONS): Promise<number> {
  return inTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCKS.app, LOCKS.migrate]);
    await client.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_version');
    const from = rows[0]?.v ?? 0;
    if (from > migrations.length) {
      throw new Error(`The index database is at schema version ${from}, newer than this gateway knows (${migrations.length})`);
    }
    for (let v = from + 1; v <= migrations.length; v++) {
      await client.query(migrations[v - 1]!);
      await client.query('INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)', [v, Date.now()]);
    }
    return migrations.length;
  });
}
