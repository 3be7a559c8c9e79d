import Database from 'better-sqlite3';
import { SluiceError } from '../../shared/errors.js';
import { openPrivateDatabase } from '../store/private-database.js';
import { createLocalReviewFeed, type ReviewEvent, type ReviewFeed } from './review-feed.js';
import { isGrantSummary, newGrantId, resendDeadline, type Grant, type NewReview, type Review, type ReviewPerson } from './review.js';
import type { ApprovalOutcome, GrantFilter, ResendClaim, ReviewFilter, ReviewLimits, ReviewResolution, ReviewStore } from './review-store.js';

/** Options of {@link openSqliteReviewStore}. */
export interface SqliteReviewStoreOptions {
  /** The database file, e.g. `<storage.dir>/reviews.db`; `:memory:` for tests that need no file. */
  readonly file: string;
  /** Where changes are announced; default an in-process feed. */
  readonly feed?: ReviewFeed;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS reviews (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  requester TEXT NOT NULL,
  connection TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  doc TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS reviews_pending ON reviews (status, expires_at);
CREATE INDEX IF NOT EXISTS reviews_requester ON reviews (requester, status);
CREATE INDEX IF NOT EXISTS reviews_created ON reviews (created_at);
CREATE TABLE IF NOT EXISTS grants (
  id TEXT PRIMARY KEY,
  review_id TEXT NOT NULL UNIQUE,
  sub TEXT NOT NULL,
  connection TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  doc TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS grants_active ON grants (sub, connection, expires_at);
`;

interface ReviewRow {
  doc: string;
}

/** Opens (creating if needed) the review database: WAL, one writer, readers never blocked. */
export function openSqliteReviewStore(options: SqliteReviewStoreOptions): ReviewStore {
  // 0600 for the database and its WAL files: held requests carry who asked for what.
  return new SqliteReviewStore(openPrivateDatabase(options.file), options.feed ?? createLocalReviewFeed());
}

class SqliteReviewStore implements ReviewStore {
  readonly feed: ReviewFeed;
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #update: Database.Statement;
  readonly #get: Database.Statement<[string], ReviewRow>;
  readonly #pendingOf: Database.Statement<[string, number], { n: number }>;
  readonly #pendingAll: Database.Statement<[number], { n: number }>;
  readonly #insertGrant: Database.Statement;
  readonly #activeGrant: Database.Statement<[string, string, number], ReviewRow>;
  #closed = false;

  constructor(db: Database.Database, feed: ReviewFeed) {
    this.#db = db;
    this.feed = feed;
    db.pragma('busy_timeout = 5000');
    db.pragma('synchronous = NORMAL');
    db.exec(SCHEMA);
    this.#insert = db.prepare(
      'INSERT INTO reviews (id, kind, status, requester, connection, created_at, expires_at, doc) VALUES (@id, @kind, @status, @requester, @connection, @created_at, @expires_at, @doc)',
    );
    this.#update = db.prepare('UPDATE reviews SET status = @status, doc = @doc WHERE id = @id');
    this.#get = db.prepare('SELECT doc FROM reviews WHERE id = ?');
    this.#pendingOf = db.prepare("SELECT count(*) AS n FROM reviews WHERE requester = ? AND status = 'pending' AND expires_at > ?");
    this.#pendingAll = db.prepare("SELECT count(*) AS n FROM reviews WHERE status = 'pending' AND expires_at > ?");
    this.#insertGrant = db.prepare(
      'INSERT INTO grants (id, review_id, sub, connection, created_at, expires_at, doc) VALUES (@id, @review_id, @sub, @connection, @created_at, @expires_at, @doc)',
    );
    this.#activeGrant = db.prepare('SELECT doc FROM grants WHERE sub = ? AND connection = ? AND expires_at > ? ORDER BY expires_at DESC LIMIT 1');
  }

  async create(review: NewReview, limits: ReviewLimits): Promise<Review> {
    const stored: Review = { ...review, status: 'pending', approvals: [] };
    // Count and insert in one transaction, so concurrent requests cannot both slip under a limit.
    this.#db.transaction(() => {
      const mine = this.#pendingOf.get(review.requester.sub, review.createdAt)?.n ?? 0;
      if (mine >= limits.perUser) {
        throw new SluiceError('ERR_REVIEW_LIMIT', {
          message: `You already have ${mine} request${mine === 1 ? '' : 's'} waiting for review (the limit is ${limits.perUser}); wait for a decision`,
          details: { limit: limits.perUser, scope: 'user' },
        });
      }
      const all = this.#pendingAll.get(review.createdAt)?.n ?? 0;
      if (all >= limits.total) {
        throw new SluiceError('ERR_REVIEW_LIMIT', {
          message: `The gateway already holds ${all} requests waiting for review (the limit is ${limits.total}); try again later`,
          details: { limit: limits.total, scope: 'gateway' },
        });
      }
      this.#insert.run({
        id: review.id,
        kind: review.kind,
        status: stored.status,
        requester: review.requester.sub,
        connection: review.connection,
        created_at: review.createdAt,
        expires_at: review.expiresAt,
        doc: JSON.stringify(stored),
      });
    })();
    await this.#publish({ type: 'review.created', review: stored, at: review.createdAt });
    return stored;
  }

  async get(id: string): Promise<Review | undefined> {
    return this.#read(id);
  }

  async list(filter: ReviewFilter = {}): Promise<Review[]> {
    const where: string[] = [];
    const params: Record<string, unknown> = { limit: filter.limit ?? 100 };
    if (filter.status !== undefined) {
      where.push('status = @status');
      params.status = filter.status;
    }
    if (filter.kind !== undefined) {
      where.push('kind = @kind');
      params.kind = filter.kind;
    }
    if (filter.requester !== undefined) {
      where.push('requester = @requester');
      params.requester = filter.requester;
    }
    if (filter.connection !== undefined) {
      where.push('connection = @connection');
      params.connection = filter.connection;
    }
    if (filter.binding !== undefined) {
      // The document holds it; the requester index narrows the rows first.
      where.push("json_extract(doc, '$.resend.binding') = @binding");
      params.binding = filter.binding;
    }
    const sql = `SELECT doc FROM reviews ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT @limit`;
    return (this.#db.prepare(sql).all(params) as ReviewRow[]).map((r) => JSON.parse(r.doc) as Review);
  }

  async approve(id: string, approval: Parameters<ReviewStore['approve']>[1]): Promise<ApprovalOutcome> {
    const events: ReviewEvent[] = [];
    const outcome = this.#db.transaction((): ApprovalOutcome => {
      const review = this.#read(id);
      if (review === undefined) throw notFound(id);
      if (review.status === 'pending' && review.expiresAt <= approval.at) {
        const expired = this.#write({ ...review, status: 'expired', resolvedAt: approval.at });
        events.push({ type: 'review.expired', review: expired, at: approval.at });
        return { review: expired };
      }
      if (review.status !== 'pending') return { review };
      if (review.approvals.some((a) => a.sub === approval.sub)) {
        throw new SluiceError('ERR_REVIEW_CONFLICT', {
          message: `You already approved ${id}; it needs ${review.minApprovals} distinct reviewers (${review.approvals.length} so far)`,
          details: { review: id },
        });
      }
      const approvals = [...review.approvals, approval];
      const actor: ReviewPerson = { sub: approval.sub, email: approval.email };
      if (approvals.length < review.minApprovals) {
        const partial = this.#write({ ...review, approvals });
        events.push({ type: 'review.approval', review: partial, actor, at: approval.at });
        return { review: partial };
      }
      const approved = this.#write({ ...review, approvals, status: 'approved', resolvedAt: approval.at, resolvedBy: actor, resolution: approval.reason });
      events.push({ type: 'review.approved', review: approved, actor, at: approval.at });
      if (review.kind !== 'grant' || !isGrantSummary(review.summary)) return { review: approved };
      const grant: Grant = {
        id: newGrantId(),
        reviewId: review.id,
        sub: review.requester.sub,
        email: review.requester.email,
        connection: review.connection,
        reason: review.reason,
        approvedBy: approvals.map((a) => a.sub),
        createdAt: approval.at,
        expiresAt: approval.at + review.summary.durationMs,
      };
      this.#insertGrant.run({
        id: grant.id,
        review_id: grant.reviewId,
        sub: grant.sub,
        connection: grant.connection,
        created_at: grant.createdAt,
        expires_at: grant.expiresAt,
        doc: JSON.stringify(grant),
      });
      return { review: approved, grant };
    })();
    for (const event of events) await this.#publish(event);
    const { review } = outcome;
    if (review.status === 'expired' && events.some((e) => e.type === 'review.expired')) throw expiredError(id);
    if (events.length === 0) throw decidedError(review);
    return outcome;
  }

  async resolve(id: string, resolution: ReviewResolution): Promise<Review | undefined> {
    const resolved = this.#db.transaction((): Review | undefined => {
      const review = this.#read(id);
      if (review === undefined || review.status !== 'pending') return undefined;
      return this.#write({
        ...review,
        status: resolution.status,
        resolvedAt: resolution.at,
        resolvedBy: resolution.by,
        resolution: resolution.reason,
      });
    })();
    if (resolved !== undefined) await this.#publish({ type: `review.${resolution.status}`, review: resolved, actor: resolution.by, at: resolution.at });
    return resolved;
  }

  async claimResend(id: string, claim: ResendClaim): Promise<Review | undefined> {
    // Read and write in one transaction: two re-sends racing for one approval, one wins.
    return this.#db.transaction((): Review | undefined => {
      const review = this.#read(id);
      if (review === undefined || review.resent !== undefined || review.requester.sub !== claim.requester) return undefined;
      const deadline = resendDeadline(review);
      if (deadline === undefined || deadline <= claim.at || review.resend?.binding !== claim.binding) return undefined;
      return this.#write({ ...review, resent: { at: claim.at, requestId: claim.requestId, sessionId: claim.sessionId } });
    })();
  }

  async listGrants(filter: GrantFilter = {}): Promise<Grant[]> {
    const where: string[] = [];
    const params: Record<string, unknown> = { limit: filter.limit ?? 100 };
    if (filter.sub !== undefined) {
      where.push('sub = @sub');
      params.sub = filter.sub;
    }
    if (filter.connection !== undefined) {
      where.push('connection = @connection');
      params.connection = filter.connection;
    }
    if (filter.activeAt !== undefined) {
      where.push('expires_at > @at');
      params.at = filter.activeAt;
    }
    const sql = `SELECT doc FROM grants ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT @limit`;
    return (this.#db.prepare(sql).all(params) as ReviewRow[]).map((r) => JSON.parse(r.doc) as Grant);
  }

  async activeGrant(sub: string, connection: string, at: number): Promise<Grant | undefined> {
    const row = this.#activeGrant.get(sub, connection, at);
    return row === undefined ? undefined : (JSON.parse(row.doc) as Grant);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
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
    return this.feed.publish(event).catch(() => undefined);
  }
}

function notFound(id: string): SluiceError {
  return new SluiceError('ERR_NOT_FOUND', { message: `No review is named "${id}"`, details: { review: id } });
}

function expiredError(id: string): SluiceError {
  return new SluiceError('ERR_REVIEW_EXPIRED', { message: `Review ${id} expired before it was decided`, details: { review: id } });
}

function decidedError(review: Review): SluiceError {
  if (review.status === 'expired') return expiredError(review.id);
  const by = review.resolvedBy?.email ?? review.resolvedBy?.sub;
  return new SluiceError('ERR_REVIEW_CONFLICT', {
    message: `Review ${review.id} is already ${review.status}${by ? ` (by ${by})` : ''}`,
    details: { review: review.id, status: review.status },
  });
}
