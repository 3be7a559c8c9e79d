import type Database from 'better-sqlite3';
import type { AuditOutboxEntry, AuditOutboxRow } from './store.js';

/** The lease a sink's sender holds while it claims and sends (see `Store.claimAuditBatch`). */
export function auditSinkLease(sink: string): string {
  return `audit-sink:${sink}`;
}

/** Rows per multi-row INSERT: 200 bound values, far under SQLite's limit of 32766. */
const INSERT_CHUNK = 100;

/**
 * The audit outbox in SQLite: one row per event and sink, `seq` from AUTOINCREMENT so a number is never
 * handed out twice, even after the newest rows were delivered and deleted (an ack names rows by `seq`).
 */
export class SqliteAuditOutbox {
  readonly #db: Database.Database;
  // Prepared once: appends run every few milliseconds under load. One INSERT per size of chunk, made
  // the first time a chunk of that size comes (at most INSERT_CHUNK of them).
  readonly #inserts = new Map<number, Database.Statement<string[]>>();
  readonly #span: Database.Statement<[], { lo: number | null; hi: number | null }>;
  readonly #count: Database.Statement<[], { n: number }>;
  readonly #dropOldest: Database.Statement<[number]>;
  readonly #lease: Database.Statement;
  readonly #batch: Database.Statement<[string, number], { seq: number; sink: string; doc: string }>;
  readonly #ack: Database.Statement<[string, string]>;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#span = db.prepare('SELECT min(seq) AS lo, max(seq) AS hi FROM audit_outbox');
    this.#count = db.prepare('SELECT count(*) AS n FROM audit_outbox');
    this.#dropOldest = db.prepare('DELETE FROM audit_outbox WHERE seq IN (SELECT seq FROM audit_outbox ORDER BY seq LIMIT ?)');
    this.#lease = db.prepare(
      `INSERT INTO leases (name, holder, expires_at) VALUES (@name, @holder, @until)
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE leases.holder = excluded.holder OR leases.expires_at <= @at`,
    );
    this.#batch = db.prepare('SELECT seq, sink, doc FROM audit_outbox WHERE sink = ? ORDER BY seq LIMIT ?');
    // One statement per ack whatever its size: the seqs arrive as one JSON array.
    this.#ack = db.prepare('DELETE FROM audit_outbox WHERE sink = ? AND seq IN (SELECT value FROM json_each(?))');
  }

  append(entries: readonly AuditOutboxEntry[], max: number): number {
    return this.#db
      .transaction((): number => {
        for (let from = 0; from < entries.length; from += INSERT_CHUNK) {
          const chunk = entries.slice(from, from + INSERT_CHUNK);
          // Rows of one multi-row INSERT take their AUTOINCREMENT seq in the order of its VALUES.
          this.#insertOf(chunk.length).run(...chunk.flatMap((e) => [e.sink, e.doc]));
        }
        // The span of seq bounds the row count from above and costs two index probes; only past the cap is it worth a count.
        const { lo, hi } = this.#span.get()!;
        if (lo === null || hi === null || hi - lo + 1 <= max) return 0;
        const excess = this.#count.get()!.n - max;
        return excess > 0 ? this.#dropOldest.run(excess).changes : 0;
      })
      .immediate();
  }

  claim(sink: string, holder: string, at: number, leaseMs: number, limit: number): AuditOutboxRow[] | undefined {
    return this.#db
      .transaction((): AuditOutboxRow[] | undefined => {
        if (this.#lease.run({ name: auditSinkLease(sink), holder, until: at + leaseMs, at }).changes === 0) return undefined;
        return this.#batch.all(sink, limit);
      })
      .immediate();
  }

  ack(sink: string, seqs: readonly number[]): void {
    if (seqs.length > 0) this.#ack.run(sink, JSON.stringify(seqs));
  }

  #insertOf(rows: number): Database.Statement<string[]> {
    let statement = this.#inserts.get(rows);
    if (statement === undefined) {
      statement = this.#db.prepare(`INSERT INTO audit_outbox (sink, doc) VALUES ${Array.from({ length: rows }, () => '(?, ?)').join(', ')}`);
      this.#inserts.set(rows, statement);
    }
    return statement;
  }

  depth(sink?: string): number {
    const row = (sink === undefined ? this.#count.get() : this.#db.prepare('SELECT count(*) AS n FROM audit_outbox WHERE sink = ?').get(sink)) as { n: number };
    return row.n;
  }
}
