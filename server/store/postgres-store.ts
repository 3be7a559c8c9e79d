import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { ReviewFeed } from '../approval/review-feed.js';
import type { Grant, NewReview, Review, ReviewApproval } from '../approval/review.js';
import { LOCKS, migratePostgres, schemaVersion } from './postgres-migrations.js';
import { createPool, inTransaction, query, type PostgresConnectionOptions } from './postgres-pool.js';
import { PostgresReviewFeed } from './postgres-review-feed.js';
import { PostgresQuotas } from './postgres-quotas.js';
import { PostgresAuditOutbox } from './postgres-audit-outbox.js';
import { PostgresReviews } from './postgres-reviews.js';
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

/** Options of the Postgres store. */
export interface PostgresStoreOptions extends PostgresConnectionOptions {
  /** How often the review feed re-reads its outbox without a notification; default 1000 ms. */
  readonly feedPollIntervalMs?: number;
}

/** A session row as the driver returns it: its models already an array. */
interface SessionRow extends SessionColumns {
  user_sub: string;
  models: string[];
}

/** Columns of a session row plus its models, in order of first use. */
const SESSION_SELECT = `SELECT s.*, ARRAY(SELECT m.model FROM session_models m WHERE m.session_id = s.id ORDER BY m.position) AS models FROM sessions s`;

function toSession(row: SessionRow): SessionInfo {
  return sessionFromRow(row, row.user_sub, row.models);
}

/**
 * The shared store of replicas: one PostgreSQL database, reached through a pool; schema migrated at open.
 * Each method's atomicity is the contract's, made of transactions, row locks and conditional statements;
 * review changes reach every replica through the feed (postgres-review-feed.ts).
 */
export class PostgresStore implements Store {
  readonly feed: ReviewFeed;
  readonly #pool: pg.Pool;
  readonly #feed: PostgresReviewFeed;
  readonly #reviews: PostgresReviews;
  readonly #quotas: PostgresQuotas;
  readonly #auditOutbox: PostgresAuditOutbox;
  #closed: Promise<void> | undefined;

  private constructor(pool: pg.Pool, feed: PostgresReviewFeed) {
    this.#pool = pool;
    this.#feed = feed;
    this.feed = feed;
    this.#reviews = new PostgresReviews(pool, feed);
    this.#quotas = new PostgresQuotas(pool);
    this.#auditOutbox = new PostgresAuditOutbox(pool);
  }

  /** Connects, migrates (once across replicas opening together) and starts the review feed. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const pool = createPool(options);
    try {
      await migratePostgres(pool);
      const feed = new PostgresReviewFeed(pool, { ...options, pollIntervalMs: options.feedPollIntervalMs });
      await feed.start();
      return new PostgresStore(pool, feed);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
  }

  /** The schema version the database is at. */
  schemaVersion(): Promise<number> {
    return schemaVersion(this.#pool);
  }

  async createSession(s: NewSession): Promise<void> {
    await query(this.#pool, 
      `INSERT INTO sessions (id, user_sub, email, groups, client_id, connection, via, reason, client_address, cli_version,
        resend_of, started_at, file, key_id, replica, status)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'open')`,
      [
        s.id, s.user, s.email ?? null, JSON.stringify(s.groups), s.clientId ?? null, s.connection, s.via, s.reason ?? null,
        s.clientAddress, s.cliVersion ?? null, s.resendOf ?? null, s.startedAt, s.file, s.keyId, s.replica,
      ],
    );
  }

  async updateSession(id: string, p: SessionProgress): Promise<void> {
    const c = p.counters ?? {};
    const t = p.tokens ?? {};
    await inTransaction(this.#pool, async (client) => {
      // The update locks the session's row: progress of one session from two places is applied one after the other.
      const { rowCount } = await client.query(
        `UPDATE sessions SET requests = requests + $2, errors = errors + $3, bytes_up = bytes_up + $4, bytes_down = bytes_down + $5,
          denied = denied + $6, held = held + $7, masked = masked + $8, tokens_prompt = tokens_prompt + $9,
          tokens_completion = tokens_completion + $10, tokens_total = tokens_total + $11, last_status = coalesce($12, last_status)
         WHERE id = $1`,
        [id, c.requests ?? 0, c.errors ?? 0, c.bytesUp ?? 0, c.bytesDown ?? 0, c.denied ?? 0, c.held ?? 0, c.masked ?? 0, t.prompt ?? 0, t.completion ?? 0, t.total ?? 0, p.lastStatus ?? null],
      );
      if (rowCount === 0) return;
      for (const model of p.models ?? []) {
        await client.query(
          `INSERT INTO session_models (session_id, model, position)
           SELECT $1, $2, (SELECT count(*) FROM session_models WHERE session_id = $1) ON CONFLICT DO NOTHING`,
          [id, model],
        );
      }
      for (const [model, u] of Object.entries(p.modelUsage ?? {})) {
        await client.query(
          'UPDATE session_models SET requests = requests + $3, tokens_prompt = tokens_prompt + $4, tokens_completion = tokens_completion + $5 WHERE session_id = $1 AND model = $2',
          [id, model, u.requests, u.prompt, u.completion],
        );
      }
    });
  }

  async ping(): Promise<void> {
    await query(this.#pool, 'SELECT 1');
  }

  async usage(filter: UsageFilter): Promise<UsageRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.user !== undefined) where.push(`s.user_sub = $${params.push(filter.user)}`);
    if (filter.connection !== undefined) where.push(`s.connection = $${params.push(filter.connection)}`);
    if (filter.since !== undefined) where.push(`s.started_at >= $${params.push(filter.since)}`);
    const { rows } = await query<UsageSqlRow>(this.#pool, usageQuery(filter.by, where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`, 'user_sub'), params);
    return rows.map(usageRow);
  }

  async closeSession(id: string, seal: SessionSeal): Promise<void> {
    await query(this.#pool, 
      `UPDATE sessions SET status = $2, ended_at = $3, records = coalesce($4, records), final_hash = coalesce($5, final_hash) WHERE id = $1`,
      [id, seal.status, seal.endedAt, seal.records ?? null, seal.finalHash ?? null],
    );
  }

  async getSession(id: string): Promise<SessionInfo | undefined> {
    const { rows } = await query<SessionRow>(this.#pool, `${SESSION_SELECT} WHERE s.id = $1`, [id]);
    return rows[0] === undefined ? undefined : toSession(rows[0]);
  }

  async listSessions(filter: SessionFilter = {}): Promise<SessionPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (value: unknown): string => {
      params.push(value);
      return `$${params.length}`;
    };
    if (filter.user !== undefined) where.push(`s.user_sub = ${p(filter.user)}`);
    if (filter.connection !== undefined) where.push(`s.connection = ${p(filter.connection)}`);
    if (filter.since !== undefined) where.push(`s.started_at >= ${p(filter.since)}`);
    if (filter.until !== undefined) where.push(`s.started_at < ${p(filter.until)}`);
    if (filter.status !== undefined) where.push(`s.status = ${p(filter.status)}`);
    if (filter.resendOf !== undefined) {
      // An exchange (`ses_…#3`) exactly; a session (`ses_…`) by every `ses_…#n` ('$' sorts right after '#' in the column's C collation).
      if (filter.resendOf.includes('#')) where.push(`s.resend_of = ${p(filter.resendOf)}`);
      else where.push(`s.resend_of >= ${p(`${filter.resendOf}#`)} AND s.resend_of < ${p(`${filter.resendOf}$`)}`);
    }
    if (filter.model !== undefined) where.push(`EXISTS (SELECT 1 FROM session_models m WHERE m.session_id = s.id AND m.model = ${p(filter.model)})`);
    if (filter.cursor !== undefined) {
      const [at, id] = decodeSessionCursor(filter.cursor);
      const a = p(at);
      where.push(`(s.started_at < ${a} OR (s.started_at = ${a} AND s.id < ${p(id)}))`);
    }
    const limit = sessionPageLimit(filter.limit);
    const sql = `${SESSION_SELECT}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY s.started_at DESC, s.id DESC LIMIT ${p(limit + 1)}`;
    return sessionPage((await query<SessionRow>(this.#pool, sql, params)).rows.map(toSession), limit);
  }

  async interruptOpenSessions(replica: string, endedAt: number): Promise<string[]> {
    // One statement: the rows it changes are the ones it returns.
    const { rows } = await query<{ id: string }>(this.#pool, 
      `UPDATE sessions SET status = 'interrupted', ended_at = $2 WHERE status = 'open' AND replica = $1 RETURNING id`,
      [replica, endedAt],
    );
    return rows.map((r) => r.id).sort();
  }

  async expiredSessions(before: number, limit: number): Promise<SessionInfo[]> {
    const { rows } = await query<SessionRow>(this.#pool, 
      `${SESSION_SELECT} WHERE s.started_at < $1 AND s.status != 'open' ORDER BY s.started_at, s.id LIMIT $2`,
      [before, limit],
    );
    return rows.map(toSession);
  }

  async deleteSession(id: string): Promise<void> {
    await query(this.#pool, 'DELETE FROM sessions WHERE id = $1', [id]);
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
    return inTransaction(this.#pool, async (client) => {
      // Takes by one `sub` are serialized (a count cannot lock rows that do not exist yet); other users' are not held up.
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCKS.tunnelSlots, sub]);
      const { rowCount } = await client.query(
        `INSERT INTO tunnel_slots (id, sub, replica) SELECT $1, $2, $3 WHERE (SELECT count(*) FROM tunnel_slots WHERE sub = $2) < $4`,
        [id, sub, replica, limit],
      );
      return rowCount === 1 ? id : undefined;
    });
  }

  async releaseTunnelSlot(slot: string): Promise<void> {
    await query(this.#pool, 'DELETE FROM tunnel_slots WHERE id = $1', [slot]);
  }

  async clearTunnelSlots(replica: string): Promise<number> {
    const tunnels = (await query(this.#pool, 'DELETE FROM tunnel_slots WHERE replica = $1', [replica])).rowCount ?? 0;
    return tunnels + ((await query(this.#pool, 'DELETE FROM quota_slots WHERE replica = $1', [replica])).rowCount ?? 0);
  }

  acquireQuotaSlots(takes: readonly QuotaSlotTake[], replica: string): Promise<string[] | number> {
    return this.#quotas.acquireSlots(takes, replica);
  }

  releaseQuotaSlots(slots: readonly string[]): Promise<void> {
    return this.#quotas.releaseSlots(slots);
  }

  async replicasWithOpenState(): Promise<string[]> {
    const { rows } = await query<{ replica: string }>(this.#pool, 
      `SELECT replica FROM sessions WHERE status = 'open'
       UNION SELECT replica FROM reviews WHERE status = 'pending' AND replica IS NOT NULL
       UNION SELECT replica FROM tunnel_slots
       UNION SELECT replica FROM quota_slots
       ORDER BY 1`,
    );
    return rows.map((r) => r.replica);
  }

  async putSessionKey(sessionId: string, key: WrappedSessionKey): Promise<void> {
    await query(this.#pool, 'INSERT INTO session_keys (session_id, key_id, wrapped) VALUES ($1, $2, $3)', [sessionId, key.keyId, key.wrapped]);
  }

  async getSessionKey(sessionId: string): Promise<WrappedSessionKey | undefined> {
    const { rows } = await query<{ key_id: string; wrapped: Buffer }>(this.#pool, 'SELECT key_id, wrapped FROM session_keys WHERE session_id = $1', [sessionId]);
    return rows[0] === undefined ? undefined : { keyId: rows[0].key_id, wrapped: rows[0].wrapped };
  }

  async deleteSessionKey(sessionId: string): Promise<boolean> {
    const existed = ((await query(this.#pool, 'DELETE FROM session_keys WHERE session_id = $1', [sessionId])).rowCount ?? 0) > 0;
    // The deleted row stays in its heap page until VACUUM reclaims it: reclaimed now, rather than whenever
    // autovacuum gets to a small table. Run on a retry too. The write-ahead log keeps the row until its
    // segment is recycled, and archived WAL as long as the operator keeps it (README, PostgreSQL).
    await query(this.#pool, 'VACUUM session_keys');
    return existed;
  }

  async heartbeat(replica: string, at: number): Promise<void> {
    await query(this.#pool, 
      'INSERT INTO replicas (id, seen_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET seen_at = greatest(replicas.seen_at, excluded.seen_at)',
      [replica, at],
    );
  }

  async liveReplicas(since: number): Promise<string[]> {
    const { rows } = await query<{ id: string }>(this.#pool, 'SELECT id FROM replicas WHERE seen_at >= $1 ORDER BY id', [since]);
    return rows.map((r) => r.id);
  }

  async acquireLease(name: string, holder: string, at: number, ttlMs: number): Promise<boolean> {
    // One statement: inserted when free, taken over when expired, renewed by its holder; otherwise unchanged.
    const { rowCount } = await query(this.#pool, 
      `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE leases.holder = excluded.holder OR leases.expires_at <= $4`,
      [name, holder, at + ttlMs, at],
    );
    return (rowCount ?? 0) > 0;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await query(this.#pool, 'DELETE FROM leases WHERE name = $1 AND holder = $2', [name, holder]);
  }

  takeQuotas(takes: readonly QuotaTake[], now: number): Promise<number | undefined> {
    return this.#quotas.take(takes, now);
  }

  addQuotaUsage(adds: readonly QuotaAdd[]): Promise<void> {
    return this.#quotas.add(adds);
  }

  quotaCount(key: string, window: number): Promise<number> {
    return this.#quotas.count(key, window);
  }

  appendAuditEvents(entries: readonly AuditOutboxEntry[], max: number): Promise<number> {
    return this.#auditOutbox.append(entries, max);
  }

  claimAuditBatch(sink: string, holder: string, at: number, leaseMs: number, limit: number, delivered: readonly number[] = []): Promise<AuditOutboxRow[] | undefined> {
    return this.#auditOutbox.claim(sink, holder, at, leaseMs, limit, delivered);
  }

  ackAuditEvents(sink: string, seqs: readonly number[]): Promise<void> {
    return this.#auditOutbox.ack(sink, seqs);
  }

  auditOutboxDepth(sink?: string): Promise<number> {
    return this.#auditOutbox.depth(sink);
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#feed.close();
      await this.#pool.end();
    })();
    return this.#closed;
  }
}
