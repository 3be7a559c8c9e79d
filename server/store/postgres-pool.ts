import pg from 'pg';
import { SluiceError } from '../../shared/errors.js';

/** How the Postgres store reaches its database. */
export interface PostgresConnectionOptions {
  /**
   * A `postgres://` URL; TLS as `pg` reads it from the query (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
   * It may hold a password: it is never logged nor put in an error message.
   */
  readonly url: string;
  /** Connections the pool keeps at most; default 10. */
  readonly poolSize?: number;
  /** Milliseconds to wait for a connection before a call fails; default 5000. */
  readonly connectTimeoutMs?: number;
}

/** Defaults of the options above, in one place. */
export const POSTGRES_DEFAULTS = Object.freeze({ poolSize: 10, connectTimeoutMs: 5000 });

const INT8 = 20;

/**
 * BIGINT columns (the contract's millisecond times, counters, `count(*)`) as numbers. Every value the store
 * keeps in one is below 2^53, where a number is exact. Per client, not `pg.types.setTypeParser`: that is
 * process-wide, and would change what any other `pg` user in the process reads.
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8 && format !== 'binary') return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

/** The settings of one client or pool connection. */
export function clientConfig(options: PostgresConnectionOptions): pg.ClientConfig {
  return {
    connectionString: options.url,
    types,
    connectionTimeoutMillis: options.connectTimeoutMs ?? POSTGRES_DEFAULTS.connectTimeoutMs,
    // Without it a replica whose database host vanished (no RST) would wait on a dead socket for hours.
    keepAlive: true,
    application_name: 'sluice',
  };
}

/** The store's pool. Connections that fail while idle are dropped and replaced, never thrown at the process. */
export function createPool(options: PostgresConnectionOptions): pg.Pool {
  const pool = new pg.Pool({ ...clientConfig(options), max: options.poolSize ?? POSTGRES_DEFAULTS.poolSize });
  // An idle connection cut by the server (restart, failover) emits here; the next query opens a new one.
  pool.on('error', () => undefined);
  return pool;
}

/**
 * Runs `fn` in one transaction on one connection of `pool`: committed when it resolves, rolled back when it
 * throws. A connection that failed mid-transaction is destroyed rather than returned to the pool.
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect().catch((err: unknown) => {
    throw storeError(err);
  });
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    let result: T;
    try {
      result = await fn(client);
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackError: Error) => {
        broken = rollbackError;
      });
      throw err;
    }
    await client.query('COMMIT');
    return result;
  } catch (err) {
    broken ??= isConnectionError(err) ? (err as Error) : undefined;
    throw storeError(err);
  } finally {
    client.release(broken);
  }
}

/** One statement on a connection of `pool`, its connection failures as ERR_STORE_UNAVAILABLE. */
export async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(pool: pg.Pool, sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>(sql, params);
  } catch (err) {
    throw storeError(err);
  }
}

/**
 * ERR_STORE_UNAVAILABLE (503) for a failure to reach the database, the driver's error kept as cause; any
 * other error as it is. The message names the failure, never the URL (it may hold a password).
 */
export function storeError(err: unknown): unknown {
  if (!isConnectionError(err) || err instanceof SluiceError) return err;
  const code = (err as { code?: unknown }).code;
  const what = typeof code === 'string' ? code : (err as Error).message;
  return new SluiceError('ERR_STORE_UNAVAILABLE', { message: `The shared store (PostgreSQL) cannot be reached (${what})`, details: { cause: what }, cause: err });
}

/** A failure of the connection rather than of the statement: the server said nothing, or said it is going away. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return err instanceof Error && /Connection terminated|connection timeout|timeout exceeded when trying to connect/i.test(err.message);
  // Node's socket errors, and SQLSTATE classes 08 (connection exception) and 57P (operator intervention: shutdown).
  return /^E[A-Z]+$/.test(code) || code.startsWith('08') || code.startsWith('57P');
}

/** SQLSTATE 23505: a unique constraint refused the row. */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | undefined)?.code === '23505';
}
