import type pg from 'pg';
import { LOCKS } from './postgres-migrations.js';
import { inTransaction, query } from './postgres-pool.js';
import { auditSinkLease, CLAIM_ROWS_SQL, joinAuditDocs, OLDEST_ROWS_SQL, splitAuditDocs } from './audit-outbox-rows.js';
import type { AuditOutboxEntry, AuditOutboxRow } from './store.js';

const ACK_SQL = 'DELETE FROM audit_outbox WHERE sink = $1 AND seq = ANY($2::bigint[])';

/**
 * The audit outbox in PostgreSQL (rows as in SQLite: one per run of events for one sink). Appends hold a transaction-level advisory lock from their insert to
 * their commit, so rows commit in the order of their `seq` across replicas: a sender that has read up to
 * some `seq` never finds an older row commit behind it, and one sink sees every replica's events in one
 * order. The cap is checked under the same lock, so two replicas never both trim for the same excess.
 */
export class PostgresAuditOutbox {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async append(entries: readonly AuditOutboxEntry[], max: number): Promise<number> {
    if (entries.length === 0) return 0;
    const docs = entries.map((e) => joinAuditDocs(e.docs));
    return inTransaction(this.#pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCKS.app, LOCKS.auditOutbox]);
      await client.query(
        'INSERT INTO audit_outbox (sink, events, docs) SELECT sink, events, docs FROM unnest($1::text[], $2::int[], $3::text[]) WITH ORDINALITY AS e(sink, events, docs, n) ORDER BY n',
        [entries.map((e) => e.sink), entries.map((e) => e.docs.length), docs],
      );
      const { rows } = await client.query<{ n: string }>('SELECT coalesce(sum(events), 0) AS n FROM audit_outbox');
      const excess = Number(rows[0]?.n ?? 0) - max;
      if (excess <= 0) return 0;
      const { rows: oldest } = await client.query<{ seq: string; events: number }>(OLDEST_ROWS_SQL.replaceAll('$excess', '$1'), [excess]);
      await client.query('DELETE FROM audit_outbox WHERE seq = ANY($1::bigint[])', [oldest.map((r) => r.seq)]);
      return oldest.reduce((n, r) => n + r.events, 0);
    });
  }

  claim(sink: string, holder: string, at: number, leaseMs: number, limit: number, delivered: readonly number[]): Promise<AuditOutboxRow[] | undefined> {
    return inTransaction(this.#pool, async (client) => {
      if (delivered.length > 0) await client.query(ACK_SQL, [sink, [...delivered]]);
      const { rowCount } = await client.query(
        `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at <= $4`,
        [auditSinkLease(sink), holder, at + leaseMs, at],
      );
      if ((rowCount ?? 0) === 0) return undefined;
      const { rows } = await client.query<{ seq: string; docs: string }>(CLAIM_ROWS_SQL.replaceAll('$sink', '$1').replaceAll('$limit', '$2'), [sink, limit]);
      return rows.map((r) => ({ seq: Number(r.seq), sink, docs: splitAuditDocs(r.docs) }));
    });
  }

  async ack(sink: string, seqs: readonly number[]): Promise<void> {
    if (seqs.length === 0) return;
    await query(this.#pool, ACK_SQL, [sink, [...seqs]]);
  }

  async depth(sink?: string): Promise<number> {
    const { rows } =
      sink === undefined
        ? await query<{ n: string }>(this.#pool, 'SELECT coalesce(sum(events), 0) AS n FROM audit_outbox')
        : await query<{ n: string }>(this.#pool, 'SELECT coalesce(sum(events), 0) AS n FROM audit_outbox WHERE sink = $1', [sink]);
    return Number(rows[0]?.n ?? 0);
  }
}
