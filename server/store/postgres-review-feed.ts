import pg from 'pg';
import type { ReviewEvent, ReviewFeed, ReviewListener } from '../approval/review-feed.js';
import { LOCKS } from './postgres-migrations.js';
import { clientConfig, inTransaction, type PostgresConnectionOptions } from './postgres-pool.js';

/** The Postgres notification channel review changes are announced on. */
export const REVIEW_CHANNEL = 'sluice_reviews';

/** Options of the feed. */
export interface PostgresReviewFeedOptions extends PostgresConnectionOptions {
  /** How often the outbox is re-read without a notification; default 1000 ms. A lost NOTIFY delays delivery by at most this. */
  readonly pollIntervalMs?: number;
  /** How long events stay in the outbox; default one hour. */
  readonly keepEventsMs?: number;
}

const DEFAULTS = Object.freeze({ pollIntervalMs: 1000, keepEventsMs: 3_600_000, reconnectMs: 1000, pageSize: 500 });

/**
 * The review feed of replicas sharing one Postgres database. Every change is a row of the `review_events`
 * outbox, inserted and announced (`NOTIFY sluice_reviews`) in the transaction that makes the change, so an
 * event exists exactly when its change committed. Each replica LISTENs on a dedicated connection and, on a
 * notification or every `pollIntervalMs`, reads the rows after the last it delivered: a lost notification,
 * or a listening connection that dropped, delays delivery and loses nothing. Events commit in `seq` order
 * (the feed lock is held from the insert to the commit), so "after the last seq" never skips one that
 * commits late, and every replica delivers every event in the same order, its own included: a replica's
 * own change is delivered by the read that follows its commit, as the object it wrote.
 */
export class PostgresReviewFeed implements ReviewFeed {
  readonly #options: PostgresReviewFeedOptions;
  readonly #pool: pg.Pool;
  readonly #listeners = new Set<ReviewListener>();
  /** Events this replica wrote, by `seq`: delivered as written (not parsed back) when the reader reaches them. */
  readonly #own = new Map<number, ReviewEvent>();
  /** Callers waiting for the reader to pass a `seq`. */
  #waiting: Array<{ readonly seq: number; readonly done: () => void }> = [];
  #last = 0;
  #listener: pg.Client | undefined;
  #poll: NodeJS.Timeout | undefined;
  #reconnect: NodeJS.Timeout | undefined;
  #reading: Promise<void> | undefined;
  #again = false;
  #polls = 0;
  #closed = false;

  constructor(pool: pg.Pool, options: PostgresReviewFeedOptions) {
    this.#pool = pool;
    this.#options = options;
  }

  /** Starts listening: events committed from now on are delivered. */
  async start(): Promise<void> {
    const { rows } = await this.#pool.query<{ seq: number | null }>('SELECT max(seq) AS seq FROM review_events');
    this.#last = rows[0]?.seq ?? 0;
    await this.#listen().catch(() => this.#scheduleReconnect());
    const every = this.#options.pollIntervalMs ?? DEFAULTS.pollIntervalMs;
    this.#poll = setInterval(() => this.#read(), every);
    // The feed must not keep a stopping process alive; close() clears it.
    this.#poll.unref();
  }

  /** Writes `event` to the outbox and announces it, in a transaction of its own; then delivers it here. */
  async publish(event: ReviewEvent): Promise<void> {
    const seq = await inTransaction(this.#pool, (client) => this.append(client, event));
    await this.delivered(seq);
  }

  /**
   * Inserts `event` into the outbox and notifies, inside the caller's transaction: the last statement before
   * its COMMIT, as it takes the feed lock until then. Call `delivered` after the commit, or `failed` when it fails.
   */
  async append(client: pg.ClientBase, event: ReviewEvent): Promise<number> {
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCKS.app, LOCKS.feed]);
    const { rows } = await client.query<{ seq: number }>('INSERT INTO review_events (doc) VALUES ($1) RETURNING seq', [JSON.stringify(event)]);
    const seq = rows[0]!.seq;
    await client.query('SELECT pg_notify($1, $2)', [REVIEW_CHANNEL, String(seq)]);
    // Kept before the commit: the notification may reach the listener before the COMMIT's answer reaches us.
    this.#own.set(seq, event);
    return seq;
  }

  /**
   * The transaction holding `seq` committed: resolves once this replica's listeners have heard its event (and
   * every event before it), or once a read failed (the database went away after the commit: the next read delivers it).
   */
  delivered(seq: number): Promise<void> {
    if (this.#closed || seq <= this.#last) return Promise.resolve();
    return new Promise((done) => {
      this.#waiting.push({ seq, done });
      this.#read();
    });
  }

  /** The transaction holding `seq` did not answer: if it committed after all, the reader delivers its event as stored. */
  failed(seq: number): void {
    this.#own.delete(seq);
  }

  subscribe(listener: ReviewListener): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** Stops listening and reading. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#poll);
    clearTimeout(this.#reconnect);
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.#reading?.catch(() => undefined);
    this.#release(() => true);
  }

  #release(which: (seq: number) => boolean): void {
    const due = this.#waiting.filter((w) => which(w.seq));
    this.#waiting = this.#waiting.filter((w) => !which(w.seq));
    for (const w of due) w.done();
  }

  #deliver(event: ReviewEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch {
        // One broken watcher must not keep a held request from hearing its resolution.
      }
    }
  }

  async #listen(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client(clientConfig(this.#options));
    const lost = (): void => {
      if (this.#listener !== client) return;
      this.#listener = undefined;
      client.end().catch(() => undefined);
      this.#scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (n) => {
      if (n.channel === REVIEW_CHANNEL) this.#read();
    });
    this.#listener = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${REVIEW_CHANNEL}`);
    } catch (err) {
      if (this.#listener === client) this.#listener = undefined;
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    // What committed while nobody listened.
    this.#read();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnect !== undefined) return;
    this.#reconnect = setTimeout(() => {
      this.#reconnect = undefined;
      this.#listen().catch(() => this.#scheduleReconnect());
    }, DEFAULTS.reconnectMs);
    this.#reconnect.unref();
  }

  /** Reads the outbox after the last delivered event; one read at a time, another right after when asked meanwhile. */
  #read(): void {
    if (this.#closed) return;
    if (this.#reading !== undefined) {
      this.#again = true;
      return;
    }
    this.#reading = this.#readAll()
      .then(
        () => this.#release((seq) => seq <= this.#last),
        // The database is unreachable: the next poll or notification tries again; nobody waits for it.
        () => this.#release(() => true),
      )
      .finally(() => {
        this.#reading = undefined;
        if (this.#again) {
          this.#again = false;
          this.#read();
        }
      });
  }

  async #readAll(): Promise<void> {
    for (;;) {
      const { rows } = await this.#pool.query<{ seq: number; doc: string }>(
        'SELECT seq, doc FROM review_events WHERE seq > $1 ORDER BY seq LIMIT $2',
        [this.#last, DEFAULTS.pageSize],
      );
      for (const row of rows) {
        if (this.#closed) return;
        this.#last = row.seq;
        const own = this.#own.get(row.seq);
        this.#own.delete(row.seq);
        this.#deliver(own ?? (JSON.parse(row.doc) as ReviewEvent));
      }
      if (rows.length < DEFAULTS.pageSize) break;
    }
    if (++this.#polls % 600 === 0) {
      // Any replica may prune; several pruning at once delete the same rows.
      const keep = this.#options.keepEventsMs ?? DEFAULTS.keepEventsMs;
      await this.#pool.query(`DELETE FROM review_events WHERE written_at < now() - make_interval(secs => $1)`, [keep / 1000]);
    }
  }
}
