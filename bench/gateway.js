// Child process: the gateway under test, started the way `sluice serve` starts it (startGateway with a
// validated config, pino logging at BENCH_GATEWAY_LOG_LEVEL, default "info" like `serve`). Its stdout
// (the JSON log) goes to a file the parent names, so logging costs what it costs in production.
//
// The config (with a throwaway master key) arrives over IPC, not argv, so `ps` does not show it. Run
// with --cpu-prof (BENCH_PROFILE=1) to get a profile: the process exits through process.exit() on
// "shutdown", which is when Node writes it.
import { validateConfig } from '../dist/server/config/load.js';
import { startGateway } from '../dist/server/start-gateway.js';

const level = process.env.BENCH_GATEWAY_LOG_LEVEL ?? 'info';

let gateway;
let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  const force = setTimeout(() => process.exit(code), 3000);
  force.unref();
  try {
    await gateway?.close();
  } catch {
    // exiting anyway
  }
  process.exit(code);
}

const configMessage = new Promise((resolve) => {
  process.on('message', (msg) => {
    if (msg?.type === 'shutdown') void shutdown(0);
    if (msg?.type === 'config') resolve(msg.config);
  });
});
process.on('disconnect', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
process.on('SIGINT', () => void shutdown(0));

/**
 * What-if knobs, off by default; each changes what is measured (run.js says so in its output):
 *  - BENCH_WHATIF_TOKEN_CACHE=1: the token verifier wrapped in a small cache (token -> principal, at
 *    most 60 s and never past `exp`): what per-request JWT verification costs on the proxy path.
 *  - BENCH_WHATIF_SYNC_RECORD_WRITES=1: the recording's file writes done with fs.writevSync instead of
 *    FileHandle.writev (a thread-pool round trip per batch); fsync stays asynchronous and batched.
 * Both go through buildApp's test seams (`verifier`, `recordingIo`), never through server code changes.
 */
const WHATIF = {
  tokenCache: process.env.BENCH_WHATIF_TOKEN_CACHE === '1',
  syncRecordWrites: process.env.BENCH_WHATIF_SYNC_RECORD_WRITES === '1',
};

async function startWhatIf(config, logger) {
  const { buildApp } = await import('../dist/server/app.js');
  const options = { config, logger };
  if (WHATIF.tokenCache) {
    const { createTokenVerifier } = await import('../dist/server/identity/token-verifier.js');
    const real = createTokenVerifier({ identity: config.identity, roles: config.roles });
    const cache = new Map();
    options.verifier = {
      ready: () => real.ready(),
      async verify(token) {
        const hit = cache.get(token);
        if (hit !== undefined && hit.until > Date.now()) return hit.principal;
        const principal = await real.verify(token);
        if (cache.size >= 1000) cache.clear();
        cache.set(token, { principal, until: Math.min(principal.expiresAt * 1000, Date.now() + 60_000) });
        return principal;
      },
    };
  }
  if (WHATIF.syncRecordWrites) {
    const { nodeRecordingIo } = await import('../dist/server/recording/file-io.js');
    const { writevSync } = await import('node:fs');
    const withSyncWrites = (file, handle) => ({
      ...file,
      writev: async (buffers) => writevSync(handle.fd, buffers),
    });
    const { open } = await import('node:fs/promises');
    options.recordingIo = {
      ...nodeRecordingIo,
      async create(path) {
        const handle = await open(path, 'ax', 0o600);
        return withSyncWrites(
          {
            sync: () => handle.datasync(),
            truncate: (length) => handle.truncate(length),
            writeAt: async (buffer, position) => {
              await handle.write(buffer, 0, buffer.length, position);
            },
            close: () => handle.close(),
          },
          handle,
        );
      },
    };
  }
  const app = await buildApp(options);
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { url: `http://127.0.0.1:${app.server.address().port}`, close: () => app.close() };
}

try {
  const raw = await Promise.race([
    configMessage,
    new Promise((_, reject) => setTimeout(() => reject(new Error('no config from the bench within 10 s')), 10_000).unref()),
  ]);
  const config = validateConfig(raw, { source: 'bench' });
  const logger = level === 'silent' ? false : { level };
  gateway = WHATIF.tokenCache || WHATIF.syncRecordWrites ? await startWhatIf(config, logger) : await startGateway({ config, logger });
  process.send?.({ type: 'ready', url: gateway.url });
} catch (err) {
  process.send?.({ type: 'error', message: String(err?.stack ?? err) });
  await shutdown(1);
}
