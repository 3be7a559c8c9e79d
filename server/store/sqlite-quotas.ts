import type Database from 'better-sqlite3';
import type { QuotaAdd, QuotaTake } from './store.js';

/** Quota counters in SQLite: one writer at a time, so a take's read and write in one transaction cannot interleave. */
export class SqliteQuotas {
  readonly #db: Database.Database;
  // Prepared once: a take runs for every exchange a quota applies to.
  readonly #forget: Database.Statement<[string, number]>;
  readonly #read: Database.Statement<[string, number], { count: number }>;
  readonly #upsert: Database.Statement<[string, number, number, number]>;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#forget = db.prepare('DELETE FROM quota_counters WHERE key = ? AND expires_at <= ?');
    this.#read = db.prepare('SELECT count FROM quota_counters WHERE key = ? AND window_start = ?');
    this.#upsert = db.prepare(
      `INSERT INTO quota_counters (key, window_start, expires_at, count) VALUES (?, ?, ?, ?)
       ON CONFLICT (key, window_start) DO UPDATE SET count = count + excluded.count`,
    );
  }

  take(takes: readonly QuotaTake[], now: number): number | undefined {
    const run = this.#db.transaction((): number | undefined => {
      for (const key of new Set(takes.map((t) => t.key))) this.#forget.run(key, now);
      const refused = takes.findIndex((t) => this.count(t.key, t.window) + Math.max(t.add, 1) > t.limit);
      if (refused >= 0) return refused;
      this.#add(takes.map((t) => ({ key: t.key, window: t.window, expiresAt: t.expiresAt, amount: t.add })));
      return undefined;
    });
    // IMMEDIATE: the write lock is taken before the read, so two processes never both read the same count.
    return run.immediate();
  }

  add(adds: readonly QuotaAdd[]): void {
    this.#db.transaction(() => this.#add(adds)).immediate();
  }

  count(key: string, window: number): number {
    return this.#read.get(key, window)?.count ?? 0;
  }

  #add(adds: readonly QuotaAdd[]): void {
    for (const a of adds) if (a.amount > 0) this.#upsert.run(a.key, a.window, a.expiresAt, a.amount);
  }
}
