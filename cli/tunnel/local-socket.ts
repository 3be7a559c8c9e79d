import { lstat, stat, unlink } from 'node:fs/promises';
import { connect, type Server } from 'node:net';
import { SluiceError } from '../../shared/errors.js';

/** How long a connection attempt to an existing socket may take before it counts as live. */
const PROBE_MS = 1000;

/** True when something accepts connections on the Unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect({ path });
    const done = (live: boolean) => {
      clearTimeout(timer);
      probe.destroy();
      resolve(live);
    };
    const timer = setTimeout(() => done(true), PROBE_MS);
    probe.once('connect', () => done(true));
    probe.once('error', (err: NodeJS.ErrnoException) => done(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'));
  });
}

/**
 * Make `path` free for a new socket: nothing there, or a stale socket left by a process that died (removed).
 * A file of another kind, or a socket something still listens on, is refused, never replaced.
 */
export async function claimSocketPath(path: string): Promise<void> {
  const existing = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new SluiceError('ERR_USAGE', { message: `--socket ${path} cannot be used: ${err.message}` });
  });
  if (!existing) return;
  if (!existing.isSocket()) throw new SluiceError('ERR_USAGE', { message: `--socket ${path} exists and is not a socket: refusing to replace it` });
  if (await socketAnswers(path)) throw new SluiceError('ERR_USAGE', { message: `--socket ${path} is in use by another process` });
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw new SluiceError('ERR_USAGE', { message: `--socket ${path}: cannot remove the stale socket: ${err.message}` });
  });
}

/**
 * Listen on a Unix socket only its owner may connect to (mode 0600). The file mode is set through the umask
 * at bind time, not by a chmod afterwards: between the two another user could already connect. Node binds a
 * Unix socket synchronously inside `listen()`, so the umask is restored before any other code runs.
 */
export async function listenOwnerOnly(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new SluiceError('ERR_USAGE', { message: `--socket ${path} cannot be listened on: ${err.message}` })));
    const previous = process.umask(0o177);
    try {
      server.listen({ path }, () => resolve());
    } finally {
      process.umask(previous);
    }
  });
  const mode = (await stat(path)).mode & 0o777;
  if (mode !== 0o600) {
    await new Promise((r) => server.close(r));
    throw new SluiceError('ERR_USAGE', { message: `--socket ${path} was created with mode ${mode.toString(8)}, not 600: refusing to serve on it` });
  }
}
