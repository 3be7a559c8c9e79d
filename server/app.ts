import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { SluiceError, isSluiceError } from '../shared/errors.js';
import type { Config } from './config/schema.js';
import { createAuthenticate } from './identity/authenticate.js';
import { createTokenVerifier, type TokenVerifier } from './identity/token-verifier.js';
import { createReadiness } from './readiness.js';
import type { GatewayDeps } from './gateway-deps.js';
import { registerSystemRoutes } from './api/system-routes.js';
import { registerMeRoutes } from './api/me-routes.js';
import { registerConnectionsRoutes } from './api/connections-routes.js';
import { registerProxyRoutes } from './api/proxy-route.js';
import { createExchangeHandler } from './pipeline/run-exchange.js';
import { createHttpProtocol } from './protocols/http.js';
import { createTcpProtocol } from './protocols/tcp.js';
import { newSessionId, registerTunnelRoute } from './tunnel/tunnel-route.js';
import { registerAuditRoutes } from './api/audit-routes.js';
import { parseDuration } from './config/duration.js';
import type { RecordingIo } from './recording/file-io.js';
import { openStorage } from './recording/open-storage.js';
import { ProxySessions } from './recording/proxy-sessions.js';

export interface BuildAppOptions {
  config: Config;
  /** pino options, or false for no logs (tests). Default: info level JSON to stdout. */
  logger?: FastifyServerOptions['logger'];
  /** Replaces the JWKS-backed verifier; for tests that inject faults. */
  verifier?: TokenVerifier;
  https?: { cert: Buffer; key: Buffer };
  /** Replaces the recording's file operations; for tests that inject storage faults. */
  recordingIo?: RecordingIo;
}

/** Paths a log line must never carry: credentials in any header. */
export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
];

/** Build the gateway: plugins and routes registered, never listening (callers `listen` or `inject`). */
export async function buildApp(options: BuildAppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const logger: FastifyServerOptions['logger'] =
    options.logger === undefined ? { level: 'info', redact: LOG_REDACT } : options.logger;
  const app = Fastify({
    logger: typeof logger === 'object' && logger !== null ? { redact: LOG_REDACT, ...logger } : logger,
    // randomUUID draws from a cached pool: no syscall per request, unlike randomBytes.
    genReqId: () => `req_${randomUUID().replaceAll('-', '')}`,
    requestIdHeader: false,
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    bodyLimit: 1024 * 1024,
    forceCloseConnections: true,
    ...(options.https ? { https: options.https } : {}),
  }) as unknown as FastifyInstance;

  const verifier = options.verifier ?? createTokenVerifier({ identity: config.identity, roles: config.roles });
  // Index and session files; refuses to start with connections but no master key.
  const storage = await openStorage({ config, io: options.recordingIo, log: app.log });
  const deps: GatewayDeps = {
    config,
    verifier,
    authenticate: createAuthenticate(verifier),
    readiness: createReadiness({ verifier, recording: storage?.recording }),
    store: storage?.store,
    recording: storage?.recording,
  };

  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  app.setErrorHandler((err, req, reply) => {
    let error: SluiceError;
    if (isSluiceError(err)) error = err;
    else if ((err as { validation?: unknown }).validation || (err as { statusCode?: number }).statusCode === 400) {
      error = new SluiceError('ERR_BAD_REQUEST', { message: (err as Error).message });
    } else if ((err as { statusCode?: number }).statusCode === 413) {
      error = new SluiceError('ERR_BODY_TOO_LARGE');
    } else {
      req.log.error({ err }, 'unhandled error');
      error = new SluiceError('ERR_INTERNAL');
    }
    if (error.status === 401) {
      reply.header('www-authenticate', `Bearer realm="sluice", error="invalid_token", error_description="${error.code}"`);
    }
    if (error.status >= 500) req.log.warn({ code: error.code, cause: (error.cause as Error)?.message }, error.message);
    else req.log.info({ code: error.code }, error.message);
    return reply.code(error.status).send(error.toJSON());
  });

  app.setNotFoundHandler((req, reply) => {
    const error = new SluiceError('ERR_NOT_FOUND', { message: `No route ${req.method} ${req.url.split('?')[0]}` });
    return reply.code(404).send(error.toJSON());
  });

  registerSystemRoutes(app, deps);
  registerMeRoutes(app, deps);
  registerConnectionsRoutes(app, deps);
  registerAuditRoutes(app, deps);

  // The data path: one exchange handler behind both the tunnel's HTTP protocol and the direct proxy.
  const recorder = storage?.recording.recorder;
  const exchange = createExchangeHandler(recorder === undefined ? {} : { recorder });
  const http = createHttpProtocol({ exchange });
  const tcp = createTcpProtocol(recorder === undefined ? {} : { recorder });
  const proxySessions =
    storage === undefined ? undefined : new ProxySessions({ recording: storage.recording, idleMs: parseDuration(config.storage.proxy_session_idle), newId: newSessionId });
  app.addHook('onClose', async () => {
    await Promise.all([http.close(), tcp.close()]);
    await exchange.close();
    proxySessions?.close();
    // Last: every session still open is sealed once its exchanges have ended.
    await storage?.close();
  });
  registerProxyRoutes(app, {
    connections: () => config.connections,
    authenticate: (req) => deps.authenticate(req.headers),
    exchange,
    ...(proxySessions === undefined
      ? {}
      : {
          sessionFor: (principal, req) => {
            const name = (req.params as { connection: string }).connection;
            // The route resolved this name to a connection just before asking.
            const connection = config.connections.find((c) => c.name === name)!;
            return proxySessions.sessionFor(principal, connection, req.ip);
          },
        }),
  });
  await registerTunnelRoute(app, { ...deps, http, tcp });

  return app;
}
