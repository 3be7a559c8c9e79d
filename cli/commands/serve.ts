import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Option } from 'commander';
import type { RegisterCommand } from '../context.js';
import { waitForSignal } from '../signals.js';
import { SluiceError } from '../../shared/errors.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A `--sample` file: one JSON request body, read as the gateway reads bodies. */
async function readSample(file: string): Promise<{ name: string; body: unknown }> {
  const { parseJsonBody } = await import('../../server/codec/json-text.js');
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new SluiceError('ERR_USAGE', { message: `Cannot read --sample ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
  }
  const parsed = parseJsonBody(bytes, 'application/json');
  if (parsed.kind !== 'json') throw new SluiceError('ERR_USAGE', { message: `--sample ${file} is not a JSON document${parsed.kind === 'unreadable' ? `: ${parsed.reason}` : ''}` });
  return { name: file, body: parsed.value };
}

/** The primary's metrics listener under `--workers N`, when `metrics_listen` is set. */
async function startPoolMetrics(listen: string | undefined): Promise<{ close(): Promise<void> } | undefined> {
  if (listen === undefined) return undefined;
  const { parseListen } = await import('../../server/listen-address.js');
  const { startMetricsListener } = await import('../../server/metrics/metrics-listener.js');
  const { clusterMetricsSource } = await import('../../server/metrics/cluster-metrics.js');
  return startMetricsListener(parseListen(listen), clusterMetricsSource());
}

export const registerServe: RegisterCommand = (program, ctx) => {
  program
    .command('serve')
    .summary('run the gateway')
    .description(
      'Run the gateway: verify callers, apply policy, forward to upstreams and record every exchange. ' +
        'The config file is validated before anything starts; each problem is listed with its path.',
    )
    .addOption(new Option('-c, --config <file>', 'gateway configuration (YAML)').env('SLUICE_CONFIG').default('sluice.yaml'))
    .option('--listen <host:port>', 'override the listen address of the config file')
    .option('--insecure', 'allow a non-loopback listen address without TLS (tokens then travel in clear text)', false)
    .option('--check', 'validate the config file and exit; warns about rules reading request.json fields no sample request has', false)
    .option('--sample <file>', 'with --check: a JSON request body to check rules against, besides the built-in samples (repeatable)', collect, [])
    .option('--log-level <level>', 'trace, debug, info, warn, error or fatal', 'info')
    .option('--workers <n>', 'gateway processes sharing the listen port: a number, or auto (one per core); more than 1 needs storage.database', '1')
    .addHelpText(
      'after',
      '\nEnvironment:\n  SLUICE_CONFIG   default for --config\n  Values written ${env:NAME} in the config file are read from the environment.\n\n' +
        'SIGHUP re-reads the config file (as POST /v1/admin/reload does); an invalid file is refused and logged.\n' +
        'Exit codes: 0 stopped cleanly, 2 invalid configuration or listen address, or a master key that does not\n' +
        'match the one storage.dir was written with (ERR_MASTER_KEY_MISMATCH, naming the key id), an identity provider\n' +
        'whose discovery document or keys do not fit identity (ERR_IDP_MISMATCH), or an address it cannot listen on\n' +
        '(ERR_LISTEN_FAILED), or --workers above 1 without storage.database (ERR_CONFIG_INVALID). A provider that cannot\n' +
        'be reached is a warning: the gateway starts, unready until it answers.\n' +
        'SIGTERM or SIGINT drains: no new connections, exchanges in flight finish for up to shutdown_grace (default 30s),\n' +
        'sessions are sealed, exit 0. With --workers, every worker drains (and SIGHUP reloads every worker), a worker that\n' +
          'dies is started again, and the primary serves metrics_listen with every worker\'s metrics summed.',
    )
    .action(async (opts: { config: string; listen?: string; insecure: boolean; check: boolean; sample: string[]; logLevel: string; workers: string }) => {
      // Loaded on use so that client commands start fast.
      const { loadConfigFile } = await import('../../server/config/load.js');
      const { startGateway } = await import('../../server/start-gateway.js');
      if (opts.sample.length > 0 && !opts.check) throw new SluiceError('ERR_USAGE', { message: '--sample is used with --check' });
      const { parseWorkerCount, checkWorkersNeedDatabase } = await import('../../server/cluster/worker-count.js');
      const { leaveAfterFailedStart, leaveWorkerPool, runWorkerPool, workerNumber } = await import('../../server/cluster/worker-pool.js');
      const workers = parseWorkerCount(opts.workers);
      const config = await loadConfigFile(opts.config, { env: ctx.env });
      checkWorkersNeedDatabase(workers, config.storage.database);
      const worker = workerNumber();
      if (workers > 1 && worker === undefined && !opts.check) {
        // The primary: validated the config above, so a bad file fails once here rather than in every worker.
        const stopped = waitForSignal(['SIGINT', 'SIGTERM']);
        // The primary holds metrics_listen (workers do not bind it), answering each scrape with every worker's metrics summed.
        const metrics = await startPoolMetrics(config.metrics_listen);
        try {
          const code = await runWorkerPool({ count: workers, stopped, log: (message) => ctx.out.stderr.write(`sluice: ${message}\n`) });
          if (code !== 0) process.exitCode = code;
        } finally {
          await metrics?.close();
        }
        return;
      }
      if (opts.check) {
        const { checkRecordingKey } = await import('../../server/recording/open-storage.js');
        checkRecordingKey(config);
        // Type errors failed the load above; what the type checker cannot see (fields of the caller's JSON) is checked against samples.
        const { unknownJsonFields } = await import('../../server/policy/rule-field-check.js');
        const { SAMPLE_REQUESTS } = await import('../../server/policy/sample-requests.js');
        const samples = [...SAMPLE_REQUESTS, ...(await Promise.all(opts.sample.map(readSample)))];
        for (const warning of unknownJsonFields(config.policies, samples)) ctx.out.stderr.write(`sluice: warning: ${warning.message}\n`);
        // The provider as the start will find it: a mismatch fails the check as it fails the start; one that cannot be reached is a warning, as at start.
        const { checkIdentityProvider } = await import('../../server/identity/provider-check.js');
        await checkIdentityProvider({ issuer: config.identity.issuer, algorithms: config.identity.algorithms }).catch((err: unknown) => {
          if ((err as SluiceError).code !== 'ERR_IDP_UNAVAILABLE') throw err;
          ctx.out.stderr.write(`sluice: warning: ${(err as SluiceError).message}; the gateway would start unready\n`);
        });
        ctx.out.stdout.write(`${opts.config}: valid (${config.connections.length} connection${config.connections.length === 1 ? '' : 's'})\n`);
        return;
      }
      // Listening before 'ready' is logged: a supervisor may signal as soon as it reads it.
      const stop = waitForSignal(['SIGINT', 'SIGTERM']);
      const gateway = await startGateway({
        config,
        listen: opts.listen,
        insecure: opts.insecure,
        logger: { level: opts.logLevel },
        configDir: dirname(resolve(opts.config)),
        reloadConfig: () => loadConfigFile(opts.config, { env: ctx.env }),
        ...(worker === undefined ? {} : { worker }),
      }).catch((err: unknown) => {
        // A worker that cannot start must exit (non-zero, its error printed by the caller) for the primary to start it again.
        leaveAfterFailedStart();
        throw err;
      });
      // One remote input must never take down every caller's tunnel: log the fault, keep serving.
      process.on('unhandledRejection', (err) => gateway.app.log.error({ err }, 'unhandled rejection'));
      gateway.app.log.info({ url: gateway.url, ...(worker === undefined ? {} : { worker }) }, 'sluice gateway ready');
      // SIGHUP re-reads the file; an invalid one is logged and refused, and the running config stays.
      const onHangup = (): void => {
        gateway.reload().then(
          (report) => gateway.app.log.info({ applied: report.applied, restart_required: report.restartRequired }, 'configuration reloaded (SIGHUP)'),
          (err: unknown) => gateway.app.log.error({ err: (err as Error).message, problems: (err as { details?: { problems?: unknown } }).details?.problems }, 'configuration reload refused; the running configuration stays'),
        );
      };
      process.on('SIGHUP', onHangup);
      const signal = await stop;
      process.off('SIGHUP', onHangup);
      // A second signal while draining (the terminal's SIGINT reaches every worker, and the primary passes SIGTERM on) must not kill the drain.
      const ignore = (): void => undefined;
      process.on('SIGINT', ignore);
      process.on('SIGTERM', ignore);
      gateway.app.log.info({ signal }, 'draining: no new connections; exchanges in flight may finish');
      const outcome = await gateway.drain();
      gateway.app.log.info({ outcome }, 'shut down');
      process.off('SIGINT', ignore);
      process.off('SIGTERM', ignore);
      leaveWorkerPool();
    });
};
