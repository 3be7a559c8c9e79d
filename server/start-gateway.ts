import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { SluiceError } from '../shared/errors.js';
import { buildApp } from './app.js';
import { createLiveConfig, type ReloadReport } from './config/live-config.js';
import type { Config } from './config/schema.js';
import { isLoopback, parseListen, urlHost } from './listen-address.js';

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
}

export interface RunningGateway {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
  /**
   * Re-reads the configuration and applies it (SIGHUP). Throws, changing nothing, when the new one is
   * invalid or the gateway was started without `reloadConfig`.
   */
  reload(): Promise<ReloadReport>;
}

/** Build the app and listen: loopback by default, TLS when configured, refusing plaintext off loopback. */
export async function startGateway(options: StartGatewayOptions): Promise<RunningGateway> {
  const { config } = options;
  const address = parseListen(options.listen ?? config.listen);
  const tls = config.tls;
  if (!tls && !isLoopback(address.host) && !options.insecure) {
    throw new SluiceError('ERR_INSECURE_LISTEN', {
      message: `Refusing to listen on ${urlHost(address)} without TLS: configure tls.cert and tls.key, or pass --insecure`,
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
  const live = createLiveConfig(config);
  const { reloadConfig } = options;
  const app = await buildApp({ config, logger: options.logger, https, live, reloadConfig, configDir: options.configDir });
  if (!tls && !isLoopback(address.host)) {
    app.log.warn({ listen: urlHost(address) }, 'listening on a non-loopback address without TLS (--insecure): tokens travel in clear text');
  }
  await app.listen({ host: address.host, port: address.port });
  const bound = app.server.address();
  const port = typeof bound === 'object' && bound ? bound.port : address.port;
  const url = `${tls ? 'https' : 'http'}://${urlHost({ host: address.host, port })}`;
  const reload = async (): Promise<ReloadReport> => {
    if (reloadConfig === undefined) throw new SluiceError('ERR_BAD_REQUEST', { message: 'This gateway was started without a configuration file to re-read' });
    return live.apply(await reloadConfig());
  };
  return { app, url, close: () => app.close(), reload };
}
