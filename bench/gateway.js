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

try {
  const raw = await Promise.race([
    configMessage,
    new Promise((_, reject) => setTimeout(() => reject(new Error('no config from the bench within 10 s')), 10_000).unref()),
  ]);
  const config = validateConfig(raw, { source: 'bench' });
  const logger = level === 'silent' ? false : { level };
  gateway = await startGateway({ config, logger });
  process.send?.({ type: 'ready', url: gateway.url });
} catch (err) {
  process.send?.({ type: 'error', message: String(err?.stack ?? err) });
  await shutdown(1);
}
