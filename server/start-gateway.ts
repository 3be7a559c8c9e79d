import cluster from 'node:cluster';
import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { SluiceError } from '../shared/errors.js';
import { buildApp } from './app.js';
import { drainAndClose, type DrainOutcome } from './cluster/graceful-drain.js';
import { parseDuration } from './config/duration.js';
import { createLiveConfig, type ReloadReport } from './config/live-config.js';
import type { Config } from './config/schema.js';
import { checkIdentityProvider } from './identity/provider-check.js';
import { isLoopback, parseListen, urlHost } from './listen-address.js';
import { listenFailure } from './listen-probe.js';
import { answerPrimaryScrapes } from './metrics/cluster-metrics.js';
import { startMetricsListener } from './metrics/metrics-listener.js';
import { startGrpcListener, type GrpcListener } from './protocols/grpc-listener.js';

export interface StartGatewayOptions {
  config: Config;
  /** Overrides `config.listen`. */
  listen?: string;
  /** Allow a non-loopback address without TLS. */
  insecure?: boolean;
  logger?: FastifyServerOptions['logger'];
  /** Where the config file lives (masking selectors are resolved from there). */
  configDir?: string;
  /** Re-reads and validates the configuration (the file `serve` started from); enables reload. */
  reloadConfig?: () => Promise<Config>;
  /** This process's worker number (`serve --workers N`), part of the default replica id. Default 0. */
  worker?: number;
}

export interface RunningGateway {
  app: FastifyInstance;
  url: string;
  /** `http://HOST:PORT` of the metrics listener (`metrics_listen`), which serves `GET /metrics`; absent when off, and in a worker of `--workers N` (the primary serves it). */
  metricsUrl?: string;
  /** `http://HOST:PORT` (or `https://` with `tls`) of the gRPC listener (`grpc_listen`); absent when off. */
  grpcUrl?: string;
  close(): Promise<void>;
  /**
   * Stops accepting, lets exchanges in flight finish for up to `shutdown_grace` (as the running config has
   * it), then closes (SIGTERM). Resolves with how the drain ended.
   */
  drain(): Promise<DrainOutcome>;
  /**
   * Re-reads the configuration and applies it (SIGHUP). Throws, changing nothing, when the new one is
   * invalid or the gateway was started without `reloadConfig`.
   */
  reload(): Promise<ReloadReport>;
}

/**
 * Check the identity provider, build the app and listen: loopback by default, TLS when configured, refusing
 * plaintext off loopback. A provider whose discovery or keys do not fit `identity` stops the start
 * (ERR_IDP_MISMATCH: waiting will not fix it); one that cannot be reached is logged as a warning and the
 * gateway starts unready, so a provider that is down for a minute does not take the gateway down with it.
 * A failed listen (ERR_LISTEN_FAILED) closes everything built before it.
 */
export async function startGateway(options: StartGatewayOptions): Promise<RunningGateway> {
  const { config } = options;
  const address = parseListen(options.listen ?? config.listen);
  const tls = config.tls;
  if (!tls && !isLoopback(address.host) && !options.insecure) {
    throw new SluiceError('ERR_INSECURE_LISTEN', {
      message: `Refusing to listen on ${urlHost(address)} without TLS: configure tls.cert and tls.key, or pass --insecure`,
    });
  }
  // Calls on the gRPC listener carry bearer tokens too: the same rule holds there.
  const grpcAddress = config.grpc_listen === undefined ? undefined : parseListen(config.grpc_listen);
  if (grpcAddress !== undefined && !tls && !isLoopback(grpcAddress.host) && !options.insecure) {
    throw new SluiceError('ERR_INSECURE_LISTEN', {
      message: `Refusing to listen for gRPC on ${urlHost(grpcAddress)} without TLS: configure tls.cert and tls.key, or pass --insecure`,
    });
  }
  let https: { cert: Buffer; key: Buffer } | undefined;
  if (tls) {
    try {
      https = { cert: await readFile(tls.cert), key: await readFile(tls.key) };
    } catch (cause) {
      throw new SluiceError('ERR_CONFIG_UNREADABLE', {
        message: `Cannot read the TLS certificate or key: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`,
        cause,
      });
    }
  }
  let unreachable: SluiceError | undefined;
  try {
    await checkIdentityProvider({ issuer: config.identity.issuer, algorithms: config.identity.algorithms });
  } catch (err) {
    if (!(err instanceof SluiceError) || err.code !== 'ERR_IDP_UNAVAILABLE') throw err;
    unreachable = err;
  }
  const live = createLiveConfig(config);
  const { reloadConfig } = options;
  const app = await buildApp({ config, logger: options.logger, https, live, reloadConfig, configDir: options.configDir, worker: options.worker });
  if (!tls && !isLoopback(address.host)) {
    app.log.warn({ listen: urlHost(address) }, 'listening on a non-loopback address without TLS (--insecure): tokens travel in clear text');
  }
  if (unreachable !== undefined) {
    app.log.warn({ code: unreachable.code, idp_url: unreachable.details?.url }, `${unreachable.message}; tokens cannot be verified and /readyz stays unready until it answers`);
  }
  let metricsUrl: string | undefined;
  let grpc: GrpcListener | undefined;
  try {
    if (config.metrics_listen !== undefined && app.metrics !== null && options.worker !== undefined && cluster.isWorker) {
      // A worker of `serve --workers N`: the primary holds metrics_listen and asks every worker at each scrape.
      answerPrimaryScrapes(app.metrics.registry);
    } else if (config.metrics_listen !== undefined && app.metrics !== null) {
      // Bound before the data port, and closed with the app: a scrape never reaches the data path.
      const metrics = await startMetricsListener(parseListen(config.metrics_listen), app.metrics);
      app.addHook('onClose', () => metrics.close());
      metricsUrl = metrics.url;
    }
    if (grpcAddress !== undefined && app.grpcCalls !== null) {
      // Closed before the app closes its pipeline and seals sessions, so no call starts on a closing gateway.
      const listener = await startGrpcListener(grpcAddress, app.grpcCalls, https === undefined ? {} : { tls: https });
      grpc = listener;
      app.addHook('preClose', () => listener.close());
    }
    await app.listen({ host: address.host, port: address.port });
  } catch (err) {
    // The store, the recording and their timers are open by now: a failed start must not leave them behind.
    await app.close().catch(() => undefined);
    throw err instanceof SluiceError ? err : listenFailure(address, err);
  }
  const bound = app.server.address();
  const port = typeof bound === 'object' && bound ? bound.port : address.port;
  const url = `${tls ? 'https' : 'http'}://${urlHost({ host: address.host, port })}`;
  const reload = async (): Promise<ReloadReport> => {
    if (app.reloadConfiguration === null) throw new SluiceError('ERR_BAD_REQUEST', { message: 'This gateway was started without a configuration file to re-read' });
    // The operator's signal, audited as an admin's POST /v1/admin/reload is.
    return app.reloadConfiguration('SIGHUP');
  };
  const drain = (): Promise<DrainOutcome> =>
    drainAndClose(app, { graceMs: parseDuration(live.get().shutdown_grace), ...(grpc === undefined ? {} : { listeners: [grpc] }) });
  return { app, url, ...(metricsUrl === undefined ? {} : { metricsUrl }), ...(grpc === undefined ? {} : { grpcUrl: grpc.url }), close: () => app.close(), drain, reload };
}
