import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { LOCKS } from './postgres-migrations.js';
import { inTransaction, query } from './postgres-pool.js';
import type { QuotaAdd, QuotaSlotTake, QuotaTake } from './store.js';

/**
 * Quota counters in PostgreSQL, exact across replicas: a take creates its rows if missing, then locks
 * them (in key order, so two takes of the same keys cannot deadlock) and reads, checks and adds in one
 * transaction; usage is added with upserts, never through a cache.
 */
export class PostgresQuotas {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  take(takes: readonly QuotaTake[], now: number): Promise<number | undefined> {
    return inTransaction(this.#pool, async (client) => {
      const keys = [...new Set(takes.map((t) => t.key))].sort();
      await client.query('DELETE FROM quota_counters WHERE key = ANY($1) AND expires_at <= $2', [keys, now]);
      const rows = [...new Map(takes.map((t) => [`${t.key}\u0000${t.window}`, t])).values()].sort((a, b) =>
        a.key < b.key ? -1 : a.key > b.key ? 1 : a.window - b.window,
      );
      for (const t of rows) {
        await client.query(
          'INSERT INTO quota_counters (key, window_start, expires_at, count) VALUES ($1, $2, $3, 0) ON CONFLICT (key, window_start) DO NOTHING',
          [t.key, t.window, t.expiresAt],
        );
      }
      const counts = new Map<string, number>();
      for (const t of rows) {
        const { rows: found } = await client.query<{ count: string }>('SELECT count FROM quota_counters WHERE key = $1 AND window_start = $2 FOR UPDATE', [t.key, t.window]);
        counts.set(`${t.key}\u0000${t.window}`, Number(found[0]?.count ?? 0));
      }
      const refused = takes.findIndex((t) => counts.get(`${t.key}\u0000${t.window}`)! + Math.max(t.add, 1) > t.limit);
      if (refused >= 0) return refused;
      for (const t of takes) {
        if (t.add > 0) await client.query('UPDATE quota_counters SET count = count + $3 WHERE key = $1 AND window_start = $2', [t.key, t.window, t.add]);
      }
      return undefined;
    });
  }

  async add(adds: readonly QuotaAdd[]): Promise<void> {
    const positive = adds.filter((a) => a.amount > 0);
    if (positive.length === 0) return;
    await query(
      this.#pool,
      `INSERT INTO quota_counters (key, window_start, expires_at, count)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
       ON CONFLICT (key, window_start) DO UPDATE SET count = quota_counters.count + excluded.count`,
      [positive.map((a) => a.key), positive.map((a) => a.window), positive.map((a) => a.expiresAt), positive.map((a) => a.amount)],
    );
  }

  acquireSlots(takes: readonly QuotaSlotTake[], replica: string): Promise<string[] | number> {
    return inTransaction(this.#pool, async (client) => {
      // Takes of one key are serialized (a count cannot lock rows that do not exist yet), the keys locked
      // in order so two calls under the same rules cannot deadlock; other keys' takes are not held up.
      for (const key of [...new Set(takes.map((t) => t.key))].sort()) {
        await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCKS.quotaSlots, key]);
      }
      for (const [i, t] of takes.entries()) {
        const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM quota_slots WHERE key = $1', [t.key]);
        if (Number(rows[0]!.n) >= t.limit) return i;
      }
      const ids = takes.map(() => randomUUID());
      await client.query('INSERT INTO quota_slots (id, key, replica) SELECT id, key, $3 FROM unnest($1::text[], $2::text[]) AS t(id, key)', [
        ids,
        takes.map((t) => t.key),
        replica,
      ]);
      return ids;
    });
  }

  async releaseSlots(ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await query(this.#pool, 'DELETE FROM quota_slots WHERE id = ANY($1)', [ids]);
  }

  async count(key: string, window: number): Promise<number> {
    const { rows } = await query<{ count: string }>(this.#pool, 'SELECT count FROM quota_counters WHERE key = $1 AND window_start = $2', [key, window]);
    return Number(rows[0]?.count ?? 0);
  }
}
