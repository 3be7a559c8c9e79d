import { dirname, resolve } from 'node:path';
import { Option } from 'commander';
import type { RegisterCommand } from '../context.js';
import { waitForSignal } from '../signals.js';

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
    .option('--check', 'validate the config file and exit', false)
    .option('--log-level <level>', 'trace, debug, info, warn, error or fatal', 'info')
    .addHelpText(
      'after',
      '\nEnvironment:\n  SLUICE_CONFIG   default for --config\n  Values written ${env:NAME} in the config file are read from the environment.\n\n' +
        'SIGHUP re-reads the config file (as POST /v1/admin/reload does); an invalid file is refused and logged.\n' +
        'Exit codes: 0 stopped cleanly, 2 invalid configuration or listen address.',
    )
    .action(async (opts: { config: string; listen?: string; insecure: boolean; check: boolean; logLevel: string }) => {
      // Loaded on use so that client commands start fast.
      const { loadConfigFile } = await import('../../server/config/load.js');
      const { startGateway } = await import('../../server/start-gateway.js');
      const config = await loadConfigFile(opts.config, { env: ctx.env });
      if (opts.check) {
        const { checkRecordingKey } = await import('../../server/recording/open-storage.js');
        checkRecordingKey(config);
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
      });
      // One remote input must never take down every caller's tunnel: log the fault, keep serving.
      process.on('unhandledRejection', (err) => gateway.app.log.error({ err }, 'unhandled rejection'));
      gateway.app.log.info({ url: gateway.url }, 'sluice gateway ready');
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
      gateway.app.log.info({ signal }, 'shutting down');
      await gateway.close();
    });
};
