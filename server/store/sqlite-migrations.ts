/**
 * Schema of the SQLite store, one entry per version. A migration is applied once, in a transaction,
 * and recorded in `schema_version`; released entries are never edited, only appended to.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  // 1: session index, models per session, reviews, grants.
  `
  CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    email TEXT,
    groups TEXT NOT NULL,
    client_id TEXT,
    connection TEXT NOT NULL,
    via TEXT NOT NULL,
    reason TEXT,
    client_address TEXT NOT NULL,
    cli_version TEXT,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    file TEXT NOT NULL,
    key_id TEXT NOT NULL,
    replica TEXT NOT NULL,
    status TEXT NOT NULL,
    records INTEGER,
    final_hash TEXT,
    requests INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    bytes_up INTEGER NOT NULL DEFAULT 0,
    bytes_down INTEGER NOT NULL DEFAULT 0,
    denied INTEGER NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0,
    masked INTEGER NOT NULL DEFAULT 0,
    tokens_prompt INTEGER NOT NULL DEFAULT 0,
    tokens_completion INTEGER NOT NULL DEFAULT 0,
    tokens_total INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX sessions_by_start ON sessions (started_at DESC, id DESC);
  CREATE INDEX sessions_by_user ON sessions (user, started_at DESC);
  CREATE INDEX sessions_by_connection ON sessions (connection, started_at DESC);
  CREATE INDEX sessions_by_status ON sessions (status, replica);
  CREATE TABLE session_models (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (session_id, model)
  );
  CREATE INDEX session_models_by_model ON session_models (model);
  CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    exchange_id TEXT NOT NULL,
    requester TEXT NOT NULL,
    connection TEXT NOT NULL,
    rule TEXT NOT NULL,
    reviewers TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    decided_by TEXT,
    decided_at INTEGER,
    note TEXT,
    summary TEXT
  );
  CREATE INDEX reviews_by_status ON reviews (status, created_at DESC);
  CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    connection TEXT NOT NULL,
    rule TEXT,
    granted_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );
  CREATE INDEX grants_by_user ON grants (user, connection, expires_at);
  `,
  // 2: the recorded exchange a session re-sends.
  `
  ALTER TABLE sessions ADD COLUMN resend_of TEXT;
  CREATE INDEX sessions_by_resend_of ON sessions (resend_of);
  `,
  // 3: wrapped data keys of sessions (recording format v2), replica heartbeats, leases for sweeps.
  `
  CREATE TABLE session_keys (
    session_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    wrapped BLOB NOT NULL
  );
  CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    seen_at INTEGER NOT NULL
  );
  CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
  );
  `,
  // 4: reviews, their approvals and grants as the gateway keeps them (until now in a database of their
  // own, reviews.db), replacing version 1's tables that nothing wrote; per-user tunnel slots.
  `
  DROP TABLE reviews;
  DROP TABLE grants;
  CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    requester TEXT NOT NULL,
    connection TEXT NOT NULL,
    binding TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    doc TEXT NOT NULL
  ) STRICT;
  CREATE INDEX reviews_pending ON reviews (status, expires_at);
  CREATE INDEX reviews_by_requester ON reviews (requester, status);
  CREATE INDEX reviews_by_created ON reviews (created_at);
  CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    review_id TEXT NOT NULL UNIQUE,
    sub TEXT NOT NULL,
    connection TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    doc TEXT NOT NULL
  ) STRICT;
  CREATE INDEX grants_active ON grants (sub, connection, expires_at);
  CREATE TABLE tunnel_slots (
    id TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    replica TEXT NOT NULL
  ) STRICT;
  CREATE INDEX tunnel_slots_by_sub ON tunnel_slots (sub);
  CREATE INDEX tunnel_slots_by_replica ON tunnel_slots (replica);
  `,
  // 5: the replica holding a pending review's caller, so the review is abandoned when that replica dies.
  `
  ALTER TABLE reviews ADD COLUMN replica TEXT;
  CREATE INDEX reviews_by_replica ON reviews (replica, status);
  `,
  // 6: quota counters, one row per key and window.
  `
  CREATE TABLE quota_counters (
    key TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
  ) STRICT;
  `,
  // 7: quota slots, one row per call in flight under a `concurrent_streams` limit.
  `
  CREATE TABLE quota_slots (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    replica TEXT NOT NULL
  ) STRICT;
  CREATE INDEX quota_slots_by_key ON quota_slots (key);
  CREATE INDEX quota_slots_by_replica ON quota_slots (replica);
  `,
  // 8: the audit outbox, one row per event and sink until the sink has it.
  `
  CREATE TABLE audit_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    doc TEXT NOT NULL
  ) STRICT;
  CREATE INDEX audit_outbox_by_sink ON audit_outbox (sink, seq);
  `,
  // 9: each model's share of a session (exchanges answered, tokens), for usage by model.
  `
  ALTER TABLE session_models ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE session_models ADD COLUMN tokens_prompt INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE session_models ADD COLUMN tokens_completion INTEGER NOT NULL DEFAULT 0;
  `,
  // 10: the audit outbox keeps one row per run of events for a sink (JSON lines in docs), so a flush
  // of many events costs one row; rows waiting from version 8 become runs of one, their seq kept, and the
  // next seq goes on from the highest ever handed out.
  `
  CREATE TABLE audit_outbox_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    events INTEGER NOT NULL CHECK (events > 0),
    docs TEXT NOT NULL
  ) STRICT;
  INSERT INTO audit_outbox_runs (seq, sink, events, docs) SELECT seq, sink, 1, doc FROM audit_outbox ORDER BY seq;
  DELETE FROM sqlite_sequence WHERE name = 'audit_outbox_runs';
  INSERT INTO sqlite_sequence (name, seq) SELECT 'audit_outbox_runs', seq FROM sqlite_sequence WHERE name = 'audit_outbox';
  DROP TABLE audit_outbox;
  ALTER TABLE audit_outbox_runs RENAME TO audit_outbox;
  CREATE INDEX audit_outbox_by_sink ON audit_outbox (sink, seq, events);
  `,
];
