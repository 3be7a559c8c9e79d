import type Database from 'better-sqlite3';
import type { QuotaAdd, QuotaTake } from './store.js';

/** Quota counters in SQLite: one writer at a time, so a take's read and write in one transaction cannot interleave. */
export class SqliteQuotas {
  readonly #db: Database.Database;

  constructor(db: Database.Database) {
    this.#db = db;
  }

  take(takes: readonly QuotaTake[], now: number): number | undefined {
    const forget = this.#db.prepare('DELETE FROM quota_counters WHERE key = ? AND expires_at <= ?');
    const read = this.#db.prepare('SELECT count FROM quota_counters WHERE key = ? AND window_start = ?');
    const run = this.#db.transaction((): number | undefined => {
      for (const key of new Set(takes.map((t) => t.key))) forget.run(key, now);
      const refused = takes.findIndex((t) => {
        const row = read.get(t.key, t.window) as { count: number } | undefined;
        return (row?.count ?? 0) + Math.max(t.add, 1) > t.limit;
      });
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
    const row = this.#db.prepare('SELECT count FROM quota_counters WHERE key = ? AND window_start = ?').get(key, window) as { count: number } | undefined;
    return row?.count ?? 0;
  }

  #add(adds: readonly QuotaAdd[]): void {
    const upsert = this.#db.prepare(
      `INSERT INTO quota_counters (key, window_start, expires_at, count) VALUES (?, ?, ?, ?)
       ON CONFLICT (key, window_start) DO UPDATE SET count = count + excluded.count`,
    );
    for (const a of adds) if (a.amount > 0) upsert.run(a.key, a.window, a.expiresAt, a.amount);
  }
}
