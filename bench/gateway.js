// Child process: the gateway under test, started the way `sluice serve` starts it (startGateway with a
// validated config, pino logging at BENCH_GATEWAY_LOG_LEVEL, default "info" like `serve`). Its stdout
// (the JSON log) goes to a file the parent names, so logging costs what it costs in production.
//
// The config (with a throwaway master key) arrives over IPC, not argv, so `ps` does not show it. Run
// with --cpu-prof (BENCH_PROFILE=1) to get a profile: the process exits through process.exit() on
// "shutdown", which is when Node writes it.
import { validateConfig } from '../dist/server/config/load.js';
import { startGateway } from '../dist/server/start-gateway.js';

import { serveFromParent } from './procs.js';

const level = process.env.BENCH_GATEWAY_LOG_LEVEL ?? 'info';

await serveFromParent((raw) =>
  startGateway({ config: validateConfig(raw, { source: 'bench' }), logger: level === 'silent' ? false : { level } }),
);
