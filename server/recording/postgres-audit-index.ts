import pg from 'pg';
import { clientConfig, storeError } from '../store/postgres-pool.js';
import type { SessionStatus, WrappedSessionKey } from '../store/store.js';
import type { AuditedSession, AuditIndex } from './audit-index.js';

/** How `audit verify` reads the index of `storage.database`. */
export interface PostgresAuditIndexOptions {
  /** The `postgres://` URL of `storage.database` (TLS from its query, as the store reads it); never printed. */
  readonly url: string;
  /**
   * Only the sessions of this replica and its workers (`ID` and `ID/N`): replicas that share the database
   * but keep their own storage directories each hold only their own files. Default: every session.
   */
  readonly replica?: string;
  /** Sessions read per query: memory stays bounded by one page however many sessions the index holds. Default 500. */
  readonly pageSize?: number;
}

/** Defaults of the options above, in one place. */
export const POSTGRES_AUDIT_INDEX_DEFAULTS = Object.freeze({ pageSize: 500 });

interface SessionRow {
  readonly id: string;
  readonly file: string;
  readonly status: SessionStatus;
  readonly records: number | null;
  readonly final_hash: string | null;
  readonly started_at: number;
}

/**
 * The session index of `storage.database`, read-only. One connection holds one READ ONLY transaction at
 * REPEATABLE READ for as long as the index is open: the database refuses any write through it (verifying
 * evidence must never change it), and every page of sessions and every key is read from one snapshot, so a
 * gateway writing meanwhile neither skips nor repeats a session. Sessions are read a page at a time, by
 * (started_at, id), as `sessions_by_start` orders them.
 */
export class PostgresAuditIndex implements AuditIndex {
  readonly #client: pg.Client;
  readonly #options: PostgresAuditIndexOptions;

  private constructor(client: pg.Client, options: PostgresAuditIndexOptions) {
    this.#client = client;
    this.#options = options;
  }

  /** Connects and opens the read-only transaction; a database out of reach is ERR_STORE_UNAVAILABLE. */
  static async open(options: PostgresAuditIndexOptions): Promise<PostgresAuditIndex> {
    const client = new pg.Client(clientConfig({ url: options.url }));
    // A connection cut while idle would otherwise be thrown at the process; the next query reports it.
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    } catch (err) {
      await client.end().catch(() => undefined);
      throw storeError(err);
    }
    return new PostgresAuditIndex(client, options);
  }

  async *sessions(only?: string): AsyncIterable<AuditedSession> {
    const pageSize = this.#options.pageSize ?? POSTGRES_AUDIT_INDEX_DEFAULTS.pageSize;
    const replica = this.#options.replica;
    let after: { startedAt: number; id: string } | undefined;
    for (;;) {
      const where: string[] = [];
      const params: unknown[] = [];
      if (only !== undefined) where.push(`id = $${params.push(only)}`);
      if (replica !== undefined) {
        // A prefix match on the escaped id: `_` and `%` in a replica id match themselves only.
        const pattern = `${replica.replace(/[\\%_]/g, '\\$&')}/%`;
        where.push(`(replica = $${params.push(replica)} OR replica LIKE $${params.push(pattern)})`);
      }
      if (after !== undefined) where.push(`(started_at, id) > ($${params.push(after.startedAt)}, $${params.push(after.id)})`);
      const sql =
        'SELECT id, file, status, records, final_hash, started_at FROM sessions' +
        (where.length === 0 ? '' : ` WHERE ${where.join(' AND ')}`) +
        ` ORDER BY started_at, id LIMIT $${params.push(pageSize)}`;
      const { rows } = await this.#query<SessionRow>(sql, params);
      for (const row of rows) {
        yield {
          id: row.id,
          file: row.file,
          status: row.status,
          ...(row.records === null ? {} : { records: row.records }),
          ...(row.final_hash === null ? {} : { finalHash: row.final_hash }),
        };
      }
      if (rows.length < pageSize) return;
      const last = rows.at(-1)!;
      after = { startedAt: last.started_at, id: last.id };
    }
  }

  async getSessionKey(sessionId: string): Promise<WrappedSessionKey | undefined> {
    const { rows } = await this.#query<{ key_id: string; wrapped: Buffer }>('SELECT key_id, wrapped FROM session_keys WHERE session_id = $1', [sessionId]);
    const row = rows[0];
    return row === undefined ? undefined : { keyId: row.key_id, wrapped: row.wrapped };
  }

  async close(): Promise<void> {
    // Nothing was written: ending the transaction either way changes nothing.
    await this.#client.query('ROLLBACK').catch(() => undefined);
    await this.#client.end().catch(() => undefined);
  }

  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.#client.query<R>(sql, params);
    } catch (err) {
      throw storeError(err);
    }
  }
}

/**
 * Where a database URL points, for messages: `postgres://USER@HOST:PORT/DB`, with neither the password nor
 * the query (TLS file paths) it may carry.
 */
export function databaseLocation(url: string): string {
  try {
    const u = new URL(url);
    const user = u.username === '' ? '' : `${u.username}@`;
    return `${u.protocol}//${user}${u.host}${u.pathname}`;
  } catch {
    return 'the PostgreSQL of storage.database';
  }
}
