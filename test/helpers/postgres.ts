/**
 * One real PostgreSQL server per test file (postgres-server.ts), started in `beforeAll` and stopped in
 * `afterAll`; each test takes a fresh database of its own from it. Call `postgresFixture()` at the top of the
 * file. Nothing here is shared between files: a worker that runs several files one after the other
 * (isolate: false) starts and stops one server per file.
 */
import { afterAll, beforeAll, onTestFinished, TestRunner } from 'vitest';
import { startPostgresServer, type PostgresServer } from './postgres-server.js';

/** The server of a test file. */
export interface TestPostgres {
  /** The port the server listens on (127.0.0.1); the same across `stop` and `start`. */
  readonly port: number;
  /** A fresh, empty database; its `postgres://` URL. Dropped when the test that made it finishes. */
  database(): Promise<string>;
  /** Stops the server (fast shutdown: open connections are cut), as when the database host goes away. */
  stop(): Promise<void>;
  /** Starts the stopped server again, on the same port and data. */
  start(): Promise<void>;
}

/**
 * Starts the file's server in `beforeAll` and stops it in `afterAll`, removing its data. `database()` works in
 * tests and in hooks after `beforeAll`.
 */
export function postgresFixture(): TestPostgres {
  let server: PostgresServer | undefined;
  let port = 0;
  let databases = 0;

  beforeAll(async () => {
    server = await startPostgresServer();
    port = server.port;
  });

  afterAll(async () => {
    const closing = server;
    server = undefined;
    await closing?.close();
  });

  return {
    get port() {
      return port;
    },
    async database() {
      const current = server;
      if (current === undefined) throw new Error('the fixture\'s PostgreSQL starts in beforeAll: ask for databases from a hook or a test');
      const name = `t${process.pid}_${++databases}`;
      const url = await current.createDatabase(name);
      if (TestRunner.getCurrentTest() !== undefined) {
        onTestFinished(async () => {
          // The test may have stopped the server; its data goes with it in afterAll.
          if (!current.running()) return;
          await current.dropDatabase(name).catch(() => undefined);
        });
      }
      return url;
    },
    stop: async () => server?.stop(),
    start: async () => {
      if (server === undefined) throw new Error('the fixture\'s PostgreSQL starts in beforeAll');
      await server.start();
    },
  };
}
