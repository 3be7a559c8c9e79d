import Database from 'better-sqlite3';
import type { WrappedSessionKey, SessionStatus } from '../store/store.js';
import type { AuditedSession, AuditIndex } from './audit-index.js';

interface SessionRow {
  readonly id: string;
  readonly file: string;
  readonly status: SessionStatus;
  readonly records: number | null;
  readonly final_hash: string | null;
}

/**
 * The SQLite index file of a storage directory, read-only: no migration, no write, not even to a WAL it
 * does not need. Reads the `sessions` and `session_keys` tables the store keeps; an index from before
 * format 2 has no `session_keys` and so holds no keys.
 */
export class SqliteAuditIndex implements AuditIndex {
  readonly #db: Database.Database;
  readonly #hasKeys: boolean;

  constructor(file: string) {
    this.#db = new Database(file, { readonly: true, fileMustExist: true });
    this.#hasKeys = this.#db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'session_keys'").get() !== undefined;
  }

  async *sessions(only?: string): AsyncIterable<AuditedSession> {
    const sql = `SELECT id, file, status, records, final_hash FROM sessions${only === undefined ? '' : ' WHERE id = ?'} ORDER BY started_at, id`;
    const statement = this.#db.prepare(sql);
    const rows = (only === undefined ? statement.all() : statement.all(only)) as SessionRow[];
    for (const row of rows) {
      yield {
        id: row.id,
        file: row.file,
        status: row.status,
        ...(row.records === null ? {} : { records: row.records }),
        ...(row.final_hash === null ? {} : { finalHash: row.final_hash }),
      };
    }
  }

  async getSessionKey(sessionId: string): Promise<WrappedSessionKey | undefined> {
    if (!this.#hasKeys) return undefined;
    const row = this.#db.prepare('SELECT key_id, wrapped FROM session_keys WHERE session_id = ?').get(sessionId) as { key_id: string; wrapped: Buffer } | undefined;
    return row === undefined ? undefined : { keyId: row.key_id, wrapped: row.wrapped };
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
