import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { QuotaAdd, QuotaSlotTake, QuotaTake } from './store.js';

/** Quota counters in SQLite: one writer at a time, so a take's read and write in one transaction cannot interleave. */
export class SqliteQuotas {
  readonly #db: Database.Database;
  // Prepared once: a take runs for every exchange a quota applies to.
  readonly #forget: Database.Statement<[string, number]>;
  readonly #read: Database.Statement<[string, number], { count: number }>;
  readonly #upsert: Database.Statement<[string, number, number, number]>;
  readonly #slotsHeld: Database.Statement<[string], { n: number }>;
  readonly #slotInsert: Database.Statement<[string, string, string]>;
  readonly #slotDelete: Database.Statement<[string]>;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#forget = db.prepare('DELETE FROM quota_counters WHERE key = ? AND expires_at <= ?');
    this.#read = db.prepare('SELECT count FROM quota_counters WHERE key = ? AND window_start = ?');
    this.#upsert = db.prepare(
      `INSERT INTO quota_counters (key, window_start, expires_at, count) VALUES (?, ?, ?, ?)
       ON CONFLICT (key, window_start) DO UPDATE SET count = count + excluded.count`,
    );
    this.#slotsHeld = db.prepare('SELECT count(*) AS n FROM quota_slots WHERE key = ?');
    this.#slotInsert = db.prepare('INSERT INTO quota_slots (id, key, replica) VALUES (?, ?, ?)');
    this.#slotDelete = db.prepare('DELETE FROM quota_slots WHERE id = ?');
  }

  acquireSlots(takes: readonly QuotaSlotTake[], replica: string): string[] | number {
    const run = this.#db.transaction((): string[] | number => {
      const refused = takes.findIndex((t) => this.#slotsHeld.get(t.key)!.n >= t.limit);
      if (refused >= 0) return refused;
      return takes.map((t) => {
        const id = randomUUID();
        this.#slotInsert.run(id, t.key, replica);
        return id;
      });
    });
    // IMMEDIATE, as for takes: no two processes count the same slots.
    return run.immediate();
  }

  releaseSlots(ids: readonly string[]): void {
    this.#db.transaction(() => {
      for (const id of ids) this.#slotDelete.run(id);
    })();
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
