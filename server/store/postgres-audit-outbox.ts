import type pg from 'pg';
import { LOCKS } from './postgres-migrations.js';
import { inTransaction, query } from './postgres-pool.js';
import { auditSinkLease } from './sqlite-audit-outbox.js';
import type { AuditOutboxEntry, AuditOutboxRow } from './store.js';

/**
 * The audit outbox in PostgreSQL. Appends hold a transaction-level advisory lock from their insert to
 * their commit, so rows commit in the order of their `seq` across replicas: a sender that has read up to
 * some `seq` never finds an older row commit behind it, and one sink sees every replica's events in one
 * order. The cap is checked under the same lock, so two replicas never both trim for the same excess.
 */
export class PostgresAuditOutbox {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  append(entries: readonly AuditOutboxEntry[], max: number): Promise<number> {
    if (entries.length === 0) return Promise.resolve(0);
    return inTransaction(this.#pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCKS.app, LOCKS.auditOutbox]);
      await client.query('INSERT INTO audit_outbox (sink, doc) SELECT sink, doc FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS e(sink, doc, n) ORDER BY n', [
        entries.map((e) => e.sink),
        entries.map((e) => e.doc),
      ]);
      // Two index probes bound the row count from above; only past the cap is a count worth it.
      const { rows: span } = await client.query<{ lo: string | null; hi: string | null }>('SELECT min(seq) AS lo, max(seq) AS hi FROM audit_outbox');
      const lo = span[0]?.lo;
      const hi = span[0]?.hi;
      if (lo == null || hi == null || Number(hi) - Number(lo) + 1 <= max) return 0;
      const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM audit_outbox');
      const excess = Number(rows[0]?.n ?? 0) - max;
      if (excess <= 0) return 0;
      const { rowCount } = await client.query('DELETE FROM audit_outbox WHERE seq IN (SELECT seq FROM audit_outbox ORDER BY seq LIMIT $1)', [excess]);
      return rowCount ?? 0;
    });
  }

  claim(sink: string, holder: string, at: number, leaseMs: number, limit: number): Promise<AuditOutboxRow[] | undefined> {
    return inTransaction(this.#pool, async (client) => {
      const { rowCount } = await client.query(
        `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at <= $4`,
        [auditSinkLease(sink), holder, at + leaseMs, at],
      );
      if ((rowCount ?? 0) === 0) return undefined;
      const { rows } = await client.query<{ seq: string; sink: string; doc: string }>('SELECT seq, sink, doc FROM audit_outbox WHERE sink = $1 ORDER BY seq LIMIT $2', [sink, limit]);
      return rows.map((r) => ({ seq: Number(r.seq), sink: r.sink, doc: r.doc }));
    });
  }

  async ack(sink: string, seqs: readonly number[]): Promise<void> {
    if (seqs.length === 0) return;
    await query(this.#pool, 'DELETE FROM audit_outbox WHERE sink = $1 AND seq = ANY($2::bigint[])', [sink, [...seqs]]);
  }

  async depth(sink?: string): Promise<number> {
    const { rows } =
      sink === undefined
        ? await query<{ n: string }>(this.#pool, 'SELECT count(*) AS n FROM audit_outbox')
        : await query<{ n: string }>(this.#pool, 'SELECT count(*) AS n FROM audit_outbox WHERE sink = $1', [sink]);
    return Number(rows[0]?.n ?? 0);
  }
}
