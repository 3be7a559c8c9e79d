import type Database from 'better-sqlite3';
import type { ReviewEvent, ReviewFeed } from '../approval/review-feed.js';
import type { Grant, NewReview, Review, ReviewApproval } from '../approval/review.js';
import { reviewLimit, reviewNotFound } from './review-errors.js';
import { approvalOutcome, approvalStep, resendStep, resolutionStep, type ApprovalStep } from './review-steps.js';
import type { ApprovalOutcome, GrantFilter, GrantRevocation, ResendClaim, ReviewFilter, ReviewLimits, ReviewResolution } from './store.js';

interface DocRow {
  doc: string;
}

const DEFAULT_LIMIT = 100;

/**
 * The review half of the SQLite store: reviews, approvals and grants in the index database. A review is
 * kept whole as JSON in `doc`, with the columns queries filter on beside it. Every read-then-write runs
 * in an IMMEDIATE transaction: it takes the write lock before reading, so another connection (a second
 * process on the file) cannot commit between the read and the write, and busy_timeout waits instead
 * of failing the upgrade of a read lock.
 */
export class SqliteReviews {
  readonly #db: Database.Database;
  readonly #feed: ReviewFeed;
  readonly #insert: Database.Statement;
  readonly #update: Database.Statement;
  readonly #get: Database.Statement<[string], DocRow>;
  readonly #pendingOf: Database.Statement<[string, number], { n: number }>;
  readonly #pendingAll: Database.Statement<[number], { n: number }>;
  readonly #insertGrant: Database.Statement;
  readonly #activeGrant: Database.Statement<[string, string, number], DocRow>;
  readonly #grantInForce: Database.Statement<[string, number, number], DocRow>;
  readonly #endGrant: Database.Statement;
  readonly #getGrant: Database.Statement<[string], DocRow>;

  constructor(db: Database.Database, feed: ReviewFeed) {
    this.#db = db;
    this.#feed = feed;
    this.#insert = db.prepare(
      `INSERT INTO reviews (id, kind, status, requester, connection, binding, created_at, expires_at, replica, doc)
       VALUES (@id, @kind, @status, @requester, @connection, @binding, @created_at, @expires_at, @replica, @doc)`,
    );
    this.#update = db.prepare('UPDATE reviews SET status = @status, doc = @doc WHERE id = @id');
    this.#get = db.prepare('SELECT doc FROM reviews WHERE id = ?');
    this.#pendingOf = db.prepare("SELECT count(*) AS n FROM reviews WHERE requester = ? AND status = 'pending' AND expires_at > ?");
    this.#pendingAll = db.prepare("SELECT count(*) AS n FROM reviews WHERE status = 'pending' AND expires_at > ?");
    this.#insertGrant = db.prepare(
      `INSERT INTO grants (id, review_id, sub, connection, created_at, expires_at, doc)
       VALUES (@id, @review_id, @sub, @connection, @created_at, @expires_at, @doc)`,
    );
    this.#activeGrant = db.prepare('SELECT doc FROM grants WHERE sub = ? AND connection = ? AND expires_at > ? ORDER BY expires_at DESC LIMIT 1');
    this.#grantInForce = db.prepare('SELECT doc FROM grants WHERE id = ? AND created_at <= ? AND expires_at > ?');
    this.#endGrant = db.prepare('UPDATE grants SET expires_at = @expires_at, doc = @doc WHERE id = @id');
    this.#getGrant = db.prepare('SELECT doc FROM grants WHERE id = ?');
  }

  async create(review: NewReview, limits: ReviewLimits): Promise<Review> {
    const stored: Review = { ...review, status: 'pending', approvals: [] };
    this.#db
      .transaction(() => {
        const mine = this.#pendingOf.get(review.requester.sub, review.createdAt)?.n ?? 0;
        if (mine >= limits.perUser) throw reviewLimit('user', mine, limits.perUser);
        const all = this.#pendingAll.get(review.createdAt)?.n ?? 0;
        if (all >= limits.total) throw reviewLimit('gateway', all, limits.total);
        this.#insert.run({
          id: review.id,
          kind: review.kind,
          status: stored.status,
          requester: review.requester.sub,
          connection: review.connection,
          binding: review.resend?.binding ?? null,
          created_at: review.createdAt,
          expires_at: review.expiresAt,
          replica: review.replica ?? null,
          doc: JSON.stringify(stored),
        });
      })
      .immediate();
    await this.#publish({ type: 'review.created', review: stored, at: review.createdAt });
    return stored;
  }

  async get(id: string): Promise<Review | undefined> {
    return this.#read(id);
  }

  async list(filter: ReviewFilter = {}): Promise<Review[]> {
    const where: string[] = [];
    const params: Record<string, unknown> = { limit: filter.limit ?? DEFAULT_LIMIT };
    for (const column of ['status', 'kind', 'requester', 'connection', 'binding', 'replica'] as const) {
      if (filter[column] === undefined) continue;
      where.push(`${column} = @${column}`);
      params[column] = filter[column];
    }
    const sql = `SELECT doc FROM reviews ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT @limit`;
    return (this.#db.prepare(sql).all(params) as DocRow[]).map((r) => JSON.parse(r.doc) as Review);
  }

  async approve(id: string, approval: ReviewApproval): Promise<ApprovalOutcome> {
    const step = this.#db
      .transaction((): ApprovalStep => {
        const review = this.#read(id);
        if (review === undefined) throw reviewNotFound(id);
        const step = approvalStep(review, approval);
        if (step.event !== undefined) this.#write(step.review);
        const grant = step.grant;
        if (grant !== undefined) {
          this.#insertGrant.run({
            id: grant.id,
            review_id: grant.reviewId,
            sub: grant.sub,
            connection: grant.connection,
            created_at: grant.createdAt,
            expires_at: grant.expiresAt,
            doc: JSON.stringify(grant),
          });
        }
        return step;
      })
      .immediate();
    if (step.event !== undefined) await this.#publish(step.event);
    return approvalOutcome(step);
  }

  async resolve(id: string, resolution: ReviewResolution): Promise<Review | undefined> {
    const step = this.#db
      .transaction(() => {
        const step = resolutionStep(this.#read(id), resolution);
        if (step !== undefined) this.#write(step.review);
        return step;
      })
      .immediate();
    if (step === undefined) return undefined;
    await this.#publish(step.event);
    return step.review;
  }

  async claimResend(id: string, claim: ResendClaim): Promise<Review | undefined> {
    return this.#db
      .transaction((): Review | undefined => {
        const claimed = resendStep(this.#read(id), claim);
        return claimed === undefined ? undefined : this.#write(claimed);
      })
      .immediate();
  }

  async listGrants(filter: GrantFilter = {}): Promise<Grant[]> {
    const where: string[] = [];
    const params: Record<string, unknown> = { limit: filter.limit ?? DEFAULT_LIMIT };
    if (filter.sub !== undefined) (where.push('sub = @sub'), (params.sub = filter.sub));
    if (filter.connection !== undefined) (where.push('connection = @connection'), (params.connection = filter.connection));
    if (filter.activeAt !== undefined) (where.push('expires_at > @at'), (params.at = filter.activeAt));
    const sql = `SELECT doc FROM grants ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT @limit`;
    return (this.#db.prepare(sql).all(params) as DocRow[]).map((r) => JSON.parse(r.doc) as Grant);
  }

  async activeGrant(sub: string, connection: string, at: number): Promise<Grant | undefined> {
    const row = this.#activeGrant.get(sub, connection, at);
    return row === undefined ? undefined : (JSON.parse(row.doc) as Grant);
  }

  async getGrant(id: string): Promise<Grant | undefined> {
    const row = this.#getGrant.get(id);
    return row === undefined ? undefined : (JSON.parse(row.doc) as Grant);
  }

  async revokeGrant(id: string, at: number, revocation: GrantRevocation = {}): Promise<Grant | undefined> {
    const change = this.#db
      .transaction((): { ended: Grant; event?: ReviewEvent } | undefined => {
        const row = this.#grantInForce.get(id, at, at);
        if (row === undefined) return undefined;
        const ended: Grant = { ...(JSON.parse(row.doc) as Grant), expiresAt: at };
        this.#endGrant.run({ id, expires_at: at, doc: JSON.stringify(ended) });
        const review = this.#read(ended.reviewId);
        return { ended, event: review === undefined ? undefined : { type: 'grant.revoked', review, grant: ended, actor: revocation.by, reason: revocation.reason, at } };
      })
      .immediate();
    if (change?.event !== undefined) await this.#publish(change.event);
    return change?.ended;
  }

  #read(id: string): Review | undefined {
    const row = this.#get.get(id);
    return row === undefined ? undefined : (JSON.parse(row.doc) as Review);
  }

  #write(review: Review): Review {
    this.#update.run({ id: review.id, status: review.status, doc: JSON.stringify(review) });
    return review;
  }

  #publish(event: ReviewEvent): Promise<void> {
    // Published after the commit; a feed that fails loses an announcement, never a decision.
    return this.#feed.publish(event).catch(() => undefined);
  }
}
