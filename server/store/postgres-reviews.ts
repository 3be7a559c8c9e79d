import type pg from 'pg';
import type { ReviewEvent } from '../approval/review-feed.js';
import type { Grant, NewReview, Review, ReviewApproval } from '../approval/review.js';
import { LOCKS } from './postgres-migrations.js';
import { inTransaction, query } from './postgres-pool.js';
import type { PostgresReviewFeed } from './postgres-review-feed.js';
import { reviewLimit, reviewNotFound } from './review-errors.js';
import { approvalOutcome, approvalStep, resendStep, resolutionStep } from './review-steps.js';
import type { ApprovalOutcome, GrantFilter, GrantRevocation, ResendClaim, ReviewFilter, ReviewLimits, ReviewResolution } from './store.js';

const DEFAULT_LIMIT = 100;

/**
 * The review half of the Postgres store: reviews, approvals and grants. A review is kept whole as JSON in
 * `doc`, with the columns queries filter on beside it, as in SQLite. Every read-then-write locks the
 * review's row first (`SELECT … FOR UPDATE`): a decision racing on another replica waits for this one to
 * commit, then reads what it left. Creates serialize on an advisory lock, as the limits count rows that
 * do not exist yet. A change's event goes to the feed's outbox in the same transaction (postgres-review-feed.ts).
 * Lock order, everywhere: the limits lock, then review rows, then the feed lock.
 */
export class PostgresReviews {
  readonly #pool: pg.Pool;
  readonly #feed: PostgresReviewFeed;

  constructor(pool: pg.Pool, feed: PostgresReviewFeed) {
    this.#pool = pool;
    this.#feed = feed;
  }

  async create(review: NewReview, limits: ReviewLimits): Promise<Review> {
    const stored: Review = { ...review, status: 'pending', approvals: [] };
    const event: ReviewEvent = { type: 'review.created', review: stored, at: review.createdAt };
    await this.#changing(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCKS.app, LOCKS.reviewLimits]);
      const mine = await count(client, `SELECT count(*) AS n FROM reviews WHERE requester = $1 AND status = 'pending' AND expires_at > $2`, [review.requester.sub, review.createdAt]);
      if (mine >= limits.perUser) throw reviewLimit('user', mine, limits.perUser);
      const all = await count(client, `SELECT count(*) AS n FROM reviews WHERE status = 'pending' AND expires_at > $1`, [review.createdAt]);
      if (all >= limits.total) throw reviewLimit('gateway', all, limits.total);
      await client.query(
        `INSERT INTO reviews (id, kind, status, requester, connection, binding, created_at, expires_at, replica, doc)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [review.id, review.kind, stored.status, review.requester.sub, review.connection, review.resend?.binding ?? null, review.createdAt, review.expiresAt, review.replica ?? null, JSON.stringify(stored)],
      );
      return { outcome: undefined, events: [event] };
    });
    return stored;
  }

  async get(id: string): Promise<Review | undefined> {
    const { rows } = await query<{ doc: string }>(this.#pool, 'SELECT doc FROM reviews WHERE id = $1', [id]);
    return rows[0] === undefined ? undefined : (JSON.parse(rows[0].doc) as Review);
  }

  async list(filter: ReviewFilter = {}): Promise<Review[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    for (const column of ['status', 'kind', 'requester', 'connection', 'binding', 'replica'] as const) {
      if (filter[column] === undefined) continue;
      params.push(filter[column]);
      where.push(`${column} = $${params.length}`);
    }
    params.push(filter.limit ?? DEFAULT_LIMIT);
    const sql = `SELECT doc FROM reviews ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT $${params.length}`;
    const { rows } = await query<{ doc: string }>(this.#pool, sql, params);
    return rows.map((r) => JSON.parse(r.doc) as Review);
  }

  async approve(id: string, approval: ReviewApproval): Promise<ApprovalOutcome> {
    const step = await this.#changing(async (client) => {
      const review = await lockReview(client, id);
      if (review === undefined) throw reviewNotFound(id);
      const step = approvalStep(review, approval);
      if (step.event !== undefined) await write(client, step.review);
      const grant = step.grant;
      if (grant !== undefined) {
        await client.query(
          `INSERT INTO grants (id, review_id, sub, connection, created_at, expires_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
          [grant.id, grant.reviewId, grant.sub, grant.connection, grant.createdAt, grant.expiresAt, JSON.stringify(grant)],
        );
      }
      return { outcome: step, events: step.event === undefined ? [] : [step.event] };
    });
    return approvalOutcome(step);
  }

  async resolve(id: string, resolution: ReviewResolution): Promise<Review | undefined> {
    return this.#changing(async (client): Promise<{ outcome: Review | undefined; events: ReviewEvent[] }> => {
      const step = resolutionStep(await lockReview(client, id), resolution);
      if (step === undefined) return { outcome: undefined, events: [] };
      return { outcome: await write(client, step.review), events: [step.event] };
    });
  }

  async claimResend(id: string, claim: ResendClaim): Promise<Review | undefined> {
    return inTransaction(this.#pool, async (client) => {
      const claimed = resendStep(await lockReview(client, id), claim);
      return claimed === undefined ? undefined : write(client, claimed);
    });
  }

  async listGrants(filter: GrantFilter = {}): Promise<Grant[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown): void => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (filter.sub !== undefined) add('sub = ?', filter.sub);
    if (filter.connection !== undefined) add('connection = ?', filter.connection);
    if (filter.activeAt !== undefined) add('expires_at > ?', filter.activeAt);
    params.push(filter.limit ?? DEFAULT_LIMIT);
    const sql = `SELECT doc FROM grants ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT $${params.length}`;
    const { rows } = await query<{ doc: string }>(this.#pool, sql, params);
    return rows.map((r) => JSON.parse(r.doc) as Grant);
  }

  async activeGrant(sub: string, connection: string, at: number): Promise<Grant | undefined> {
    const { rows } = await query<{ doc: string }>(this.#pool, 
      'SELECT doc FROM grants WHERE sub = $1 AND connection = $2 AND expires_at > $3 ORDER BY expires_at DESC LIMIT 1',
      [sub, connection, at],
    );
    return rows[0] === undefined ? undefined : (JSON.parse(rows[0].doc) as Grant);
  }

  async getGrant(id: string): Promise<Grant | undefined> {
    const { rows } = await query<{ doc: string }>(this.#pool, 'SELECT doc FROM grants WHERE id = $1', [id]);
    return rows[0] === undefined ? undefined : (JSON.parse(rows[0].doc) as Grant);
  }

  async revokeGrant(id: string, at: number, revocation: GrantRevocation = {}): Promise<Grant | undefined> {
    // The event goes out in the revoking transaction: replicas whose tunnels the grant let in close them
    // within a poll of the feed, and a revocation that committed is never left unannounced.
    return this.#changing(async (client) => {
      const { rows } = await client.query<{ doc: string }>('SELECT doc FROM grants WHERE id = $1 AND created_at <= $2 AND expires_at > $2 FOR UPDATE', [id, at]);
      if (rows[0] === undefined) return { outcome: undefined, events: [] };
      const ended: Grant = { ...(JSON.parse(rows[0].doc) as Grant), expiresAt: at };
      await client.query('UPDATE grants SET expires_at = $2, doc = $3 WHERE id = $1', [id, at, JSON.stringify(ended)]);
      // Read, not locked: the review row is outside this change, and locking it after the grant's row would invert the lock order.
      const review = await client.query<{ doc: string }>('SELECT doc FROM reviews WHERE id = $1', [ended.reviewId]);
      const doc = review.rows[0]?.doc;
      const events: ReviewEvent[] = doc === undefined ? [] : [{ type: 'grant.revoked', review: JSON.parse(doc) as Review, grant: ended, actor: revocation.by, reason: revocation.reason, at }];
      return { outcome: ended, events };
    });
  }

  /**
   * Runs `fn` in a transaction and puts the events it returns in the outbox just before the commit; then
   * waits for them to be delivered here. What `fn` returns is the caller's.
   */
  async #changing<T>(fn: (client: pg.PoolClient) => Promise<{ outcome: T; events: ReviewEvent[] }>): Promise<T> {
    const appended: Array<[number, ReviewEvent]> = [];
    let outcome: T;
    try {
      outcome = await inTransaction(this.#pool, async (client) => {
        const result = await fn(client);
        for (const event of result.events) appended.push([await this.#feed.append(client, event), event]);
        return result.outcome;
      });
    } catch (err) {
      for (const [seq] of appended) this.#feed.failed(seq);
      throw err;
    }
    // As SQLite's publish: the change's caller resumes once this replica's listeners heard of it.
    for (const [seq] of appended) await this.#feed.delivered(seq);
    return outcome;
  }
}

async function count(client: pg.ClientBase, sql: string, params: unknown[]): Promise<number> {
  const { rows } = await client.query<{ n: number }>(sql, params);
  return rows[0]?.n ?? 0;
}

/** The review, its row locked until the transaction ends. */
async function lockReview(client: pg.ClientBase, id: string): Promise<Review | undefined> {
  const { rows } = await client.query<{ doc: string }>('SELECT doc FROM reviews WHERE id = $1 FOR UPDATE', [id]);
  return rows[0] === undefined ? undefined : (JSON.parse(rows[0].doc) as Review);
}

async function write(client: pg.ClientBase, review: Review): Promise<Review> {
  await client.query('UPDATE reviews SET status = $2, doc = $3 WHERE id = $1', [review.id, review.status, JSON.stringify(review)]);
  return review;
}
