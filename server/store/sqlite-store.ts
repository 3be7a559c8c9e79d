import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { createLocalReviewFeed, type ReviewFeed } from '../approval/review-feed.js';
import type { Grant, NewReview, Review, ReviewApproval } from '../approval/review.js';
import { importReviewsDb, LEGACY_REVIEWS_FILE } from './import-reviews-db.js';
import { openPrivateDatabase } from './private-database.js';
import { SQLITE_MIGRATIONS } from './sqlite-migrations.js';
import { SqliteQuotas } from './sqlite-quotas.js';
import { SqliteAuditOutbox } from './sqlite-audit-outbox.js';
import { SqliteReviews } from './sqlite-reviews.js';
import { decodeSessionCursor, sessionFromRow, sessionPage, sessionPageLimit, usageQuery, usageRow, type SessionColumns, type UsageSqlRow } from './store-rows.js';
import type {
  ApprovalOutcome,
  AuditOutboxEntry,
  AuditOutboxRow,
  GrantFilter,
  GrantRevocation,
  NewSession,
  QuotaAdd,
  UsageFilter,
  UsageRow,
  QuotaSlotTake,
  QuotaTake,
  ResendClaim,
  ReviewFilter,
  ReviewLimits,
  ReviewResolution,
  SessionFilter,
  SessionInfo,
  SessionPage,
  SessionProgress,
  SessionSeal,
  Store,
  WrappedSessionKey,
} from './store.js';

/** Options of the SQLite store. */
export interface SqliteStoreOptions {
  /** The database file (created with its directory); `:memory:` for a throwaway store. */
  readonly file: string;
  /** Milliseconds a writer waits for another connection's lock; default 5000. */
  readonly busyTimeoutMs?: number;
  /** Where review changes are announced; default an in-process feed (one process is every replica). */
  readonly feed?: ReviewFeed;
  /**
   * A review database of an earlier version, imported once at open (see import-reviews-db.ts); default
   * `reviews.db` beside `file`, none for `:memory:`; `false` imports nothing.
   */
  readonly legacyReviewsFile?: string | false;
}

/** A session row as better-sqlite3 returns it: its models one JSON array, or null when none were used. */
interface SessionRow extends SessionColumns {
  user: string;
  models: string | null;
}

/** Columns of a session row plus its models, in order of first use, as one JSON array. */
const SESSION_SELECT = `SELECT s.*, (SELECT json_group_array(model) FROM (SELECT model FROM session_models m WHERE m.session_id = s.id ORDER BY position)) AS models FROM sessions s`;

function toSession(row: SessionRow): SessionInfo {
  return sessionFromRow(row, row.user, row.models === null ? [] : (JSON.parse(row.models) as string[]));
}

/**
 * The embedded store: one SQLite file in WAL mode (readers never block the writer), schema versions
 * applied at open. better-sqlite3 is synchronous and each call is short; the statements a recording runs
 * per session (its row, progress, seal) are prepared once, the rest per call.
 */
export class SqliteStore implements Store {
  readonly feed: ReviewFeed;
  readonly #db: Database.Database;
  readonly #reviews: SqliteReviews;
  readonly #quotas: SqliteQuotas;
  readonly #auditOutbox: SqliteAuditOutbox;
  readonly #insertSession: Database.Statement;
  readonly #progress: Database.Statement;
  readonly #addModel: Database.Statement;
  readonly #addModelUsage: Database.Statement<[number, number, number, string, string]>;
  readonly #seal: Database.Statement;

  /** Opens (creating if needed) and migrates the database. */
  constructor(options: SqliteStoreOptions) {
    // 0600 for the database and its WAL files: the index names every user, connection and session.
    this.#db = openPrivateDatabase(options.file);
    // With WAL, NORMAL loses at most the last commits on power loss, never consistency; the session files are the record.
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
    const legacy = options.legacyReviewsFile ?? (options.file === ':memory:' ? false : join(dirname(options.file), LEGACY_REVIEWS_FILE));
    try {
      migrate(this.#db);
      if (legacy !== false) importReviewsDb(this.#db, legacy);
    } catch (err) {
      this.#db.close();
      throw err;
    }
    this.feed = options.feed ?? createLocalReviewFeed();
    this.#reviews = new SqliteReviews(this.#db, this.feed);
    this.#quotas = new SqliteQuotas(this.#db);
    this.#auditOutbox = new SqliteAuditOutbox(this.#db);
    this.#insertSession = this.#db.prepare(
      `INSERT INTO sessions (id, user, email, groups, client_id, connection, via, reason, client_address, cli_version,
        resend_of, started_at, file, key_id, replica, status)
       VALUES (@id, @user, @email, @groups, @client_id, @connection, @via, @reason, @client_address, @cli_version,
        @resend_of, @started_at, @file, @key_id, @replica, 'open')`,
    );
    this.#progress = this.#db.prepare(
      `UPDATE sessions SET requests = requests + @requests, errors = errors + @errors, bytes_up = bytes_up + @bytes_up,
        bytes_down = bytes_down + @bytes_down, denied = denied + @denied, held = held + @held, masked = masked + @masked,
        tokens_prompt = tokens_prompt + @prompt, tokens_completion = tokens_completion + @completion,
        tokens_total = tokens_total + @total, last_status = coalesce(@last_status, last_status)
       WHERE id = @id`,
    );
    this.#addModel = this.#db.prepare(
      `INSERT OR IGNORE INTO session_models (session_id, model, position)
       SELECT @id, @model, (SELECT count(*) FROM session_models WHERE session_id = @id) WHERE EXISTS (SELECT 1 FROM sessions WHERE id = @id)`,
    );
    this.#addModelUsage = this.#db.prepare(
      'UPDATE session_models SET requests = requests + ?, tokens_prompt = tokens_prompt + ?, tokens_completion = tokens_completion + ? WHERE session_id = ? AND model = ?',
    );
    this.#seal = this.#db.prepare(
      `UPDATE sessions SET status = @status, ended_at = @ended_at, records = coalesce(@records, records),
        final_hash = coalesce(@final_hash, final_hash) WHERE id = @id`,
    );
  }

  /** The schema version the database is at. */
  get schemaVersion(): number {
    return currentVersion(this.#db);
  }

  async createSession(s: NewSession): Promise<void> {
    this.#insertSession.run({
      id: s.id,
      user: s.user,
      email: s.email ?? null,
      groups: JSON.stringify(s.groups),
      client_id: s.clientId ?? null,
      connection: s.connection,
      via: s.via,
      reason: s.reason ?? null,
      client_address: s.clientAddress,
      cli_version: s.cliVersion ?? null,
      resend_of: s.resendOf ?? null,
      started_at: s.startedAt,
      file: s.file,
      key_id: s.keyId,
      replica: s.replica,
    });
  }

  async updateSession(id: string, p: SessionProgress): Promise<void> {
    const c = p.counters ?? {};
    const t = p.tokens ?? {};
    this.#db.transaction(() => {
      this.#progress.run({
        id,
        requests: c.requests ?? 0,
        errors: c.errors ?? 0,
        bytes_up: c.bytesUp ?? 0,
        bytes_down: c.bytesDown ?? 0,
        denied: c.denied ?? 0,
        held: c.held ?? 0,
        masked: c.masked ?? 0,
        prompt: t.prompt ?? 0,
        completion: t.completion ?? 0,
        total: t.total ?? 0,
        last_status: p.lastStatus ?? null,
      });
      for (const model of p.models ?? []) this.#addModel.run({ id, model });
      for (const [model, u] of Object.entries(p.modelUsage ?? {})) this.#addModelUsage.run(u.requests, u.prompt, u.completion, id, model);
    })();
  }

  async usage(filter: UsageFilter): Promise<UsageRow[]> {
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    if (filter.user !== undefined) (where.push('s.user = @user'), (params.user = filter.user));
    if (filter.connection !== undefined) (where.push('s.connection = @connection'), (params.connection = filter.connection));
    if (filter.since !== undefined) (where.push('s.started_at >= @since'), (params.since = filter.since));
    const sql = usageQuery(filter.by, where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`, 'user');
    return (this.#db.prepare(sql).all(params) as UsageSqlRow[]).map(usageRow);
  }

  async closeSession(id: string, seal: SessionSeal): Promise<void> {
    this.#seal.run({ id, status: seal.status, ended_at: seal.endedAt, records: seal.records ?? null, final_hash: seal.finalHash ?? null });
  }

  async getSession(id: string): Promise<SessionInfo | undefined> {
    const row = this.#db.prepare(`${SESSION_SELECT} WHERE s.id = ?`).get(id) as SessionRow | undefined;
    return row === undefined ? undefined : toSession(row);
  }

  async listSessions(filter: SessionFilter = {}): Promise<SessionPage> {
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    if (filter.user !== undefined) (where.push('s.user = @user'), (params.user = filter.user));
    if (filter.connection !== undefined) (where.push('s.connection = @connection'), (params.connection = filter.connection));
    if (filter.since !== undefined) (where.push('s.started_at >= @since'), (params.since = filter.since));
    if (filter.until !== undefined) (where.push('s.started_at < @until'), (params.until = filter.until));
    if (filter.status !== undefined) (where.push('s.status = @status'), (params.status = filter.status));
    if (filter.resendOf !== undefined) {
      // An exchange (`ses_…#3`) exactly; a session (`ses_…`) by every `ses_…#n` ('$' sorts right after '#').
      if (filter.resendOf.includes('#')) {
        where.push('s.resend_of = @resend_of');
        params.resend_of = filter.resendOf;
      } else {
        where.push('s.resend_of >= @resend_lo AND s.resend_of < @resend_hi');
        params.resend_lo = `${filter.resendOf}#`;
        params.resend_hi = `${filter.resendOf}$`;
      }
    }
    if (filter.model !== undefined) {
      where.push('EXISTS (SELECT 1 FROM session_models m WHERE m.session_id = s.id AND m.model = @model)');
      params.model = filter.model;
    }
    if (filter.cursor !== undefined) {
      const [at, id] = decodeSessionCursor(filter.cursor);
      where.push('(s.started_at < @c_at OR (s.started_at = @c_at AND s.id < @c_id))');
      params.c_at = at;
      params.c_id = id;
    }
    const limit = sessionPageLimit(filter.limit);
    params.limit = limit + 1;
    const sql = `${SESSION_SELECT}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY s.started_at DESC, s.id DESC LIMIT @limit`;
    return sessionPage((this.#db.prepare(sql).all(params) as SessionRow[]).map(toSession), limit);
  }

  async interruptOpenSessions(replica: string, endedAt: number): Promise<string[]> {
    return this.#db.transaction(() => {
      const ids = (this.#db.prepare(`SELECT id FROM sessions WHERE status = 'open' AND replica = ?`).all(replica) as { id: string }[]).map((r) => r.id);
      this.#db.prepare(`UPDATE sessions SET status = 'interrupted', ended_at = ? WHERE status = 'open' AND replica = ?`).run(endedAt, replica);
      return ids;
    })();
  }

  async expiredSessions(before: number, limit: number): Promise<SessionInfo[]> {
    const rows = this.#db
      .prepare(`${SESSION_SELECT} WHERE s.started_at < ? AND s.status != 'open' ORDER BY s.started_at, s.id LIMIT ?`)
      .all(before, limit) as SessionRow[];
    return rows.map(toSession);
  }

  async deleteSession(id: string): Promise<void> {
    this.#db.prepare('DELETE FROM sessions WHERE id = ?').run(id);
  }

  createReview(review: NewReview, limits: ReviewLimits): Promise<Review> {
    return this.#reviews.create(review, limits);
  }

  getReview(id: string): Promise<Review | undefined> {
    return this.#reviews.get(id);
  }

  listReviews(filter?: ReviewFilter): Promise<Review[]> {
    return this.#reviews.list(filter);
  }

  approveReview(id: string, approval: ReviewApproval): Promise<ApprovalOutcome> {
    return this.#reviews.approve(id, approval);
  }

  resolveReview(id: string, resolution: ReviewResolution): Promise<Review | undefined> {
    return this.#reviews.resolve(id, resolution);
  }

  claimResend(id: string, claim: ResendClaim): Promise<Review | undefined> {
    return this.#reviews.claimResend(id, claim);
  }

  listGrants(filter?: GrantFilter): Promise<Grant[]> {
    return this.#reviews.listGrants(filter);
  }

  activeGrant(sub: string, connection: string, at: number): Promise<Grant | undefined> {
    return this.#reviews.activeGrant(sub, connection, at);
  }

  getGrant(id: string): Promise<Grant | undefined> {
    return this.#reviews.getGrant(id);
  }

  revokeGrant(id: string, at: number, revocation?: GrantRevocation): Promise<Grant | undefined> {
    return this.#reviews.revokeGrant(id, at, revocation);
  }

  async acquireTunnelSlot(sub: string, replica: string, limit: number): Promise<string | undefined> {
    const id = randomUUID();
    // One statement counts and inserts: SQLite runs one writer at a time, so no two takes see the same count.
    const changed = this.#db
      .prepare(
        `INSERT INTO tunnel_slots (id, sub, replica)
         SELECT @id, @sub, @replica WHERE (SELECT count(*) FROM tunnel_slots WHERE sub = @sub) < @limit`,
      )
      .run({ id, sub, replica, limit }).changes;
    return changed > 0 ? id : undefined;
  }

  async releaseTunnelSlot(slot: string): Promise<void> {
    this.#db.prepare('DELETE FROM tunnel_slots WHERE id = ?').run(slot);
  }

  async clearTunnelSlots(replica: string): Promise<number> {
    const clear = this.#db.transaction(
      () =>
        this.#db.prepare('DELETE FROM tunnel_slots WHERE replica = ?').run(replica).changes +
        this.#db.prepare('DELETE FROM quota_slots WHERE replica = ?').run(replica).changes,
    );
    return clear();
  }

  async acquireQuotaSlots(takes: readonly QuotaSlotTake[], replica: string): Promise<string[] | number> {
    return this.#quotas.acquireSlots(takes, replica);
  }

  async releaseQuotaSlots(slots: readonly string[]): Promise<void> {
    this.#quotas.releaseSlots(slots);
  }

  async replicasWithOpenState(): Promise<string[]> {
    const rows = this.#db
      .prepare(
        `SELECT replica FROM sessions WHERE status = 'open'
         UNION SELECT replica FROM reviews WHERE status = 'pending' AND replica IS NOT NULL
         UNION SELECT replica FROM tunnel_slots
         UNION SELECT replica FROM quota_slots
         ORDER BY 1`,
      )
      .all() as { replica: string }[];
    return rows.map((r) => r.replica);
  }

  async putSessionKey(sessionId: string, key: WrappedSessionKey): Promise<void> {
    this.#db.prepare('INSERT INTO session_keys (session_id, key_id, wrapped) VALUES (?, ?, ?)').run(sessionId, key.keyId, key.wrapped);
  }

  async getSessionKey(sessionId: string): Promise<WrappedSessionKey | undefined> {
    const row = this.#db.prepare('SELECT key_id, wrapped FROM session_keys WHERE session_id = ?').get(sessionId) as
      | { key_id: string; wrapped: Buffer }
      | undefined;
    return row === undefined ? undefined : { keyId: row.key_id, wrapped: row.wrapped };
  }

  async deleteSessionKey(sessionId: string): Promise<boolean> {
    const existed = this.#db.prepare('DELETE FROM session_keys WHERE session_id = ?').run(sessionId).changes > 0;
    // secure_delete (private-database.ts) zeroes the row, but only in the page written to the WAL: the
    // database file keeps the old page, and earlier WAL frames the key itself, until a checkpoint copies
    // the zeroed page over and TRUNCATE empties the WAL. Run on a retry too, where a busy checkpoint failed.
    const [result] = this.#db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
    if (result !== undefined && result.busy !== 0) {
      throw new Error(`The key of session ${sessionId} is deleted, but the index's WAL could not be emptied (another connection is still reading it), so its bytes may remain there; retry the erasure`);
    }
    return existed;
  }

  async heartbeat(replica: string, at: number): Promise<void> {
    this.#db.prepare('INSERT INTO replicas (id, seen_at) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)').run(replica, at);
  }

  async liveReplicas(since: number): Promise<string[]> {
    return (this.#db.prepare('SELECT id FROM replicas WHERE seen_at >= ? ORDER BY id').all(since) as { id: string }[]).map((r) => r.id);
  }

  async acquireLease(name: string, holder: string, at: number, ttlMs: number): Promise<boolean> {
    // One statement: inserted when free, taken over when expired, renewed by its holder; otherwise unchanged.
    const changed = this.#db
      .prepare(
        `INSERT INTO leases (name, holder, expires_at) VALUES (@name, @holder, @until)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at <= @at`,
      )
      .run({ name, holder, until: at + ttlMs, at }).changes;
    return changed > 0;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    this.#db.prepare('DELETE FROM leases WHERE name = ? AND holder = ?').run(name, holder);
  }

  async takeQuotas(takes: readonly QuotaTake[], now: number): Promise<number | undefined> {
    return this.#quotas.take(takes, now);
  }

  async addQuotaUsage(adds: readonly QuotaAdd[]): Promise<void> {
    this.#quotas.add(adds);
  }

  async quotaCount(key: string, window: number): Promise<number> {
    return this.#quotas.count(key, window);
  }

  async appendAuditEvents(entries: readonly AuditOutboxEntry[], max: number): Promise<number> {
    return this.#auditOutbox.append(entries, max);
  }

  async claimAuditBatch(sink: string, holder: string, at: number, leaseMs: number, limit: number, delivered: readonly number[] = []): Promise<AuditOutboxRow[] | undefined> {
    return this.#auditOutbox.claim(sink, holder, at, leaseMs, limit, delivered);
  }

  async ackAuditEvents(sink: string, seqs: readonly number[]): Promise<void> {
    this.#auditOutbox.ack(sink, seqs);
  }

  async auditOutboxDepth(sink?: string): Promise<number> {
    return this.#auditOutbox.depth(sink);
  }

  async ping(): Promise<void> {
    // An embedded file: reachable as long as the process is; a failing disk shows in the recording's health.
    if (!this.#db.open) throw new Error('the SQLite store is closed');
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}

function currentVersion(db: Database.Database): number {
  const row = db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number | null };
  return row.v ?? 0;
}

/** Applies every migration newer than the database, each in its own transaction. */
function migrate(db: Database.Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  const from = currentVersion(db);
  if (from > SQLITE_MIGRATIONS.length) {
    throw new Error(`The index database is at schema version ${from}, newer than this gateway knows (${SQLITE_MIGRATIONS.length})`);
  }
  for (let v = from + 1; v <= SQLITE_MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(SQLITE_MIGRATIONS[v - 1]!);
      db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(v, Date.now());
    })();
  }
}
