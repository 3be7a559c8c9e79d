import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { SluiceError, isSluiceError } from '../shared/errors.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config/schema.js';
import { createAuthenticate } from './identity/authenticate.js';
import { createTokenVerifier, type TokenVerifier } from './identity/token-verifier.js';
import { createReadiness } from './readiness.js';
import { LOG_SERIALIZERS } from './access-log-request.js';
import { defaultLogDestination } from './batched-log-destination.js';
import type { GatewayDeps } from './gateway-deps.js';
import { registerSystemRoutes } from './api/system-routes.js';
import { registerMeRoutes } from './api/me-routes.js';
import { registerConnectionsRoutes } from './api/connections-routes.js';
import { registerProxyRoutes } from './api/proxy-route.js';
import { createExchangeHandler } from './pipeline/run-exchange.js';
import { openAiErrorBody } from './pipeline/error-response.js';
import { undecodableUrlRefusal } from './pipeline/request-path.js';
import { createConnectionProtocols } from './protocols/connection-types.js';
import { createGrpcDescriptorCache } from './protocols/grpc/grpc-descriptors.js';
import { newSessionId, registerTunnelRoute } from './tunnel/tunnel-route.js';
import { registerAuditRoutes } from './api/audit-routes.js';
import { registerSessionsRoutes } from './api/sessions-routes.js';
import { registerUsageRoutes } from './api/usage-routes.js';
import { parseDuration } from './config/duration.js';
import type { RecordingIo } from './recording/file-io.js';
import { openStorage } from './recording/open-storage.js';
import { ProxySessions } from './recording/proxy-sessions.js';
import { createGrpcDirectCalls, type GrpcDirectCalls } from './protocols/grpc-direct.js';
import { SqliteStore } from './store/sqlite-store.js';
import { assertCanRead } from './recording/session-access.js';
import { loadMaskingProfiles } from './masking/load-profiles.js';
import { createMaskingStage } from './masking/masking-stage.js';
import { replicaIdOf } from './replica/replica-config.js';
import { startReplicaRuntime } from './replica/replica-runtime.js';
import { registerAdminRoutes } from './api/admin-routes.js';
import { registerAdminRecordingsRoutes } from './api/admin-recordings-routes.js';
import { registerGrantsRoutes } from './api/grants-routes.js';
import { registerReviewsRoutes } from './api/reviews-routes.js';
import { createApprovalSystem } from './approval/approval-system.js';
import { createApprovalStage, reviewRecorder } from './approval/pipeline-approval.js';
import { openPreview, sealPreview } from './approval/review-preview-seal.js';
import { createLiveConfig, type LiveConfig } from './config/live-config.js';
import type { Exchange } from './pipeline/exchange.js';
import { compilePolicies } from './policy/policy-engine.js';
import { createRulePolicyStage } from './policy/rule-policy-stage.js';
import { createExchangeObserver, type OutcomeListener } from './metrics/exchange-observer.js';
import { metricsListener } from './metrics/metrics-outcomes.js';
import { startTracing } from './telemetry/exchange-tracing.js';
import { VERSION } from '../shared/version.js';
import { createQuotaStage } from './quotas/quota-stage.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics/gateway-metrics.js';
import { countingIdentityFailures } from './metrics/identity-failures.js';
import { pendingReviewCount } from './metrics/pending-reviews.js';
import { createAuditSystem } from './audit-sinks/audit-system.js';
import { auditSinkSettings } from './audit-sinks/audit-sinks-config.js';
import { auditExchangeListener, auditingAuthenticate, auditReviewListener } from './audit-sinks/audit-producers.js';
import { auditedReload, type AuditedReload } from './audit-sinks/audited-reload.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's metrics, kept when `metrics_listen` is set (startGateway serves them there); null otherwise. */
    readonly metrics: GatewayMetrics | null;
    /** The calls of the gRPC listener, kept when `grpc_listen` is set (startGateway listens there); null otherwise. */
    readonly grpcCalls: GrpcDirectCalls | null;
    /** Re-reads the config file and applies it, audited as `admin.reload` by `by` (SIGHUP, an admin); null without `reloadConfig`. */
    readonly reloadConfiguration: AuditedReload | null;
  }
}

export interface BuildAppOptions {
  config: Config;
  /** pino options, or false for no logs (tests). Default: info level JSON to stdout. */
  logger?: FastifyServerOptions['logger'];
  /** Replaces the JWKS-backed verifier; for tests that inject faults. */
  verifier?: TokenVerifier;
  https?: { cert: Buffer; key: Buffer };
  /** Replaces the recording's file operations; for tests that inject storage faults. */
  recordingIo?: RecordingIo;
  /** Where the config file lives: masking selector modules are resolved from here. Default: the working directory. */
  configDir?: string;
  /** The config holder a reload swaps; default one made from `config` (startGateway passes its own, for SIGHUP). */
  live?: LiveConfig;
  /** Re-reads and validates the configuration for `POST /v1/admin/reload`; without it the route refuses. */
  reloadConfig?: () => Promise<Config>;
  /** What token expiry is judged against, by the verifier and the tunnels. Default: the system clock; tests move their own forward. */
  clock?: Clock;
  /** This process's worker number under `sluice serve --workers N`: part of the default replica id (`myhost/0`). Default 0. */
  worker?: number;
}

/**
 * One access line per request — fastify's "request completed", carrying what its "incoming request" line
 * said — instead of two: under load a log line costs as much as a pipeline stage. A WebSocket upgrade,
 * which never completes as a request, is logged as it arrives (its tunnel logs opening and close).
 */
class AccessLog extends LogController {
  override incomingRequest(request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (request.headers.upgrade !== undefined) super.incomingRequest(request, reply, metadata);
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    if (error) reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored');
    else reply.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}

/** Build the gateway: plugins and routes registered, never listening (callers `listen` or `inject`). */
export async function buildApp(options: BuildAppOptions): Promise<FastifyInstance> {
  const { config } = options;
  // `true` is fastify's own defaults, without our serializers: it gets the same as no option at all.
  const logger: FastifyServerOptions['logger'] =
    options.logger === undefined || options.logger === true ? { level: 'info' } : options.logger;
  const app = Fastify({
    // The request and response serializers are ours even over a caller's: no logger may print a header or a credential from a query string.
    logger: typeof logger === 'object' && logger !== null ? { stream: defaultLogDestination(logger), ...logger, serializers: { ...logger.serializers, ...LOG_SERIALIZERS } } : logger,
    // randomUUID draws from a cached pool: no syscall per request, unlike randomBytes.
    genReqId: () => `req_${randomUUID().replaceAll('-', '')}`,
    requestIdHeader: false,
    logController: new AccessLog({ requestIdLogLabel: 'request_id' }),
    bodyLimit: 1024 * 1024,
    forceCloseConnections: true,
    // A URL the router cannot percent-decode is refused before any route runs: answer it in the house shape.
    frameworkErrors: (err, req, res) => {
      // The hook's reply is typed per route generic; this one answers before any route, in the house shape.
      const reply = res as unknown as FastifyReply;
      if (err.code !== 'FST_ERR_BAD_URL') {
        void reply.code(err.statusCode ?? 400).send(new SluiceError('ERR_BAD_REQUEST', { message: err.message }).toJSON());
        return;
      }
      const refused = undecodableUrlRefusal(req.raw.url ?? '/');
      if (req.raw.url?.startsWith('/v1/proxy/') === true) {
        void reply.code(refused.status).type('application/json').send(openAiErrorBody(refused, req.id));
      } else void reply.code(refused.status).send(refused.toJSON());
    },
    ...(options.https ? { https: options.https } : {}),
  }) as unknown as FastifyInstance;

  const clock = options.clock ?? systemClock;
  const verifier = options.verifier ?? createTokenVerifier({ identity: config.identity, roles: config.roles, now: () => clock.now() });
  // Index and session files; refuses to start with connections but no master key.
  // Owner of this process's sessions, held requests and tunnel slots among the replicas sharing the store.
  const replicaId = replicaIdOf(config.replica.id, options.worker ?? 0);
  // Audit sinks are fixed at start; events emitted while storage opens wait in memory for its outbox.
  const audit = createAuditSystem({ ...auditSinkSettings(config.audit), replica: replicaId, clock, log: app.log });
  const storage = await openStorage({ config, io: options.recordingIo, log: app.log, replica: replicaId, worker: options.worker ?? 0, clock, audit: audit.events });
  const live = options.live ?? createLiveConfig(config);
  // Kept only when something scrapes them: a gateway without `metrics_listen` pays nothing per exchange.
  const metrics =
    config.metrics_listen === undefined
      ? null
      : createGatewayMetrics({
          perUser: config.metrics.per_user,
          pendingReviews: () => pendingReviewCount(storage?.store),
          // The tunnel is the gateway's only WebSocket route.
          tunnelsOpen: () => app.websocketServer?.clients.size ?? 0,
          recordingSpool: () => storage?.recording.spool.stats(),
        });
  app.decorate('metrics', metrics);
  if (metrics !== null) audit.registerMetrics(metrics.registry);
  // Without storage there are no sessions or exchanges, and no outbox: events stay unsent (a gateway without connections).
  if (storage !== undefined) audit.start(storage.store);
  const deps: GatewayDeps = {
    // Read per request by the routes, so a reload takes effect.
    get config() {
      return live.get();
    },
    verifier,
    authenticate: auditingAuthenticate(metrics === null ? createAuthenticate(verifier) : countingIdentityFailures(createAuthenticate(verifier), metrics), audit.events),
    readiness: createReadiness({ verifier, recording: storage?.recording, store: storage?.store }),
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
  registerSessionsRoutes(app, deps);
  registerUsageRoutes(app, deps);

  // The data path: one exchange handler behind every connection type's protocol and the direct proxy.
  // Reviews and grants live in the index. A gateway without storage has no connections (nor can a reload
  // add any: live-config.ts), so nothing is ever held; its review and grant routes get a throwaway store.
  const approvalStore = storage?.store ?? new SqliteStore({ file: ':memory:' });
  const approvals = createApprovalSystem<Exchange>({
    config: live.get,
    store: approvalStore,
    record: reviewRecorder(),
    log: app.log,
    replica: replicaId,
    ...(audit.events.enabled ? { onReviewEvent: auditReviewListener(audit.events) } : {}),
  });
  const policyOf = (c: Config) => compilePolicies({ policies: c.policies, policyDefault: c.policy_default, defaultTimeoutMs: parseDuration(c.approval.default_timeout) });
  let policies = policyOf(config);
  live.onChange((next) => (policies = policyOf(next)));
  const maskingProfiles = await loadMaskingProfiles(config, { baseDir: options.configDir });
  // One descriptor cache for the gRPC protocol and the masking of its messages.
  const grpcDescriptors = createGrpcDescriptorCache();
  const masking = createMaskingStage({ profiles: maskingProfiles, grpcDescriptors });
  const policy = createRulePolicyStage({
    engine: () => policies,
    grants: approvals.grants,
    log: app.log,
    // The caller's usage is counted beside the quotas (below), in the store every replica shares.
    ...(storage === undefined ? {} : { usage: (exchange: { principal: { sub: string } }) => quotas!.usage(exchange.principal.sub) }),
  });
  // Quotas are counted in the index, which every replica shares; a gateway without one serves no connections.
  const quotas =
    storage === undefined
      ? undefined
      : createQuotaStage({
          rules: () => live.get().quotas,
          store: storage.store,
          clock,
          replica: replicaId,
          tracksUsage: () => policies.readsUsage,
          onCountFailure: (err) => app.log.warn({ err }, 'token usage could not be added to the quotas'),
        });
  // Null unless `telemetry.otlp_endpoint` is set: no OpenTelemetry code is loaded, no exchange pays for spans.
  const tracing = await startTracing({ settings: config.telemetry, version: VERSION, log: app.log });
  const outcomes: OutcomeListener[] = [
    ...(metrics === null ? [] : [metricsListener(metrics)]),
    ...(quotas === undefined ? [] : [quotas.counted]),
    ...(audit.events.enabled ? [auditExchangeListener(audit.events)] : []),
    ...(tracing === null ? [] : [tracing.listener]),
  ];
  const exchange = createExchangeHandler({
    masking,
    policy,
    approval: createApprovalStage(approvals.held, storage === undefined ? undefined : (text, requester) => sealPreview(storage.recording.keyRing, text, requester)),
    policyReadAhead: config.policy_read_ahead,
    ...(outcomes.length === 0
      ? {}
      : { observer: tracing === null ? createExchangeObserver(outcomes) : tracing.observe(createExchangeObserver(outcomes, { readRequestModel: true, timeSteps: true })) }),
    ...(quotas === undefined ? {} : { quotas }),
  });
  const protocols = createConnectionProtocols({ exchange, grpcDescriptors });
  const proxySessions =
    storage === undefined ? undefined : new ProxySessions({ recording: storage.recording, idleMs: parseDuration(config.storage.proxy_session_idle), newId: newSessionId });
  // The gRPC listener's calls are direct-proxy calls: same authentication, same sessions, same pipeline.
  app.decorate(
    'grpcCalls',
    config.grpc_listen === undefined
      ? null
      : createGrpcDirectCalls({
          connections: () => live.get().connections,
          authenticate: deps.authenticate,
          exchange,
          descriptors: grpcDescriptors,
          ...(proxySessions === undefined ? {} : { sessionFor: (principal, connection, clientAddress, call) => proxySessions.sessionFor(principal, connection, clientAddress, { response: call }) }),
        }),
  );
  // First heartbeat before the gateway serves; then heartbeats and sweeps of dead replicas' state.
  const replica = await startReplicaRuntime({
    store: approvals.store,
    id: replicaId,
    config: config.replica,
    clock,
    ...(storage === undefined ? {} : { recording: storage.recording }),
    abandonReview: (id, reason) => approvals.service.abandon(id, reason),
    log: app.log,
  });
  app.decorate('replica', replica);
  app.addHook('onClose', async () => {
    // Held requests are withdrawn first, so their callers hear why and their reviews do not stay pending.
    await approvals.close();
    await protocols.close();
    await exchange.close();
    proxySessions?.close();
    // Heartbeats stop once nothing new can start; the sealing right after is this replica's own, not a sweep's.
    await replica.stop();
    // Last: every session still open is sealed once its exchanges have ended; their session.closed events
    // reach the outbox before the store closes.
    await storage?.recording.close();
    await audit.close();
    await storage?.close();
    if (storage === undefined) await approvalStore.close();
    // After every exchange has ended (and its span with it): the queued spans are exported, then tracing stops.
    await tracing?.shutdown();
  });
  registerProxyRoutes(app, {
    connections: () => live.get().connections,
    authenticate: (req) => deps.authenticate(req.headers),
    exchange,
    ...(proxySessions === undefined
      ? {}
      : {
          sessionFor: (principal, req, options) => {
            const name = (req.params as { connection: string }).connection;
            // The route resolved this name to a connection just before asking.
            const connection = live.get().connections.find((c) => c.name === name)!;
            return proxySessions.sessionFor(principal, connection, req.ip, options);
          },
        }),
    ...(storage === undefined
      ? {}
      : {
          checkResendOf: async (principal, exchangeRef) => {
            const id = exchangeRef.slice(0, exchangeRef.indexOf('#'));
            const session = await storage.store.getSession(id);
            if (session === undefined) throw new SluiceError('ERR_NOT_FOUND', { message: `No session ${id} to re-send from` });
            // A re-send sends what only a reader of the recording could have fetched.
            assertCanRead(principal, session, live.get().audit);
          },
        }),
  });
  registerReviewsRoutes(app, { authenticate: deps.authenticate, approvals: approvals.service, openPreview: (preview, requester) => openPreview(storage?.recording.keyRing, preview, requester) });
  registerGrantsRoutes(app, { authenticate: deps.authenticate, approvals: approvals.service, config: live.get, notify: approvals.notify });
  const { reloadConfig } = options;
  const reload = reloadConfig === undefined ? null : auditedReload(async () => live.apply(await reloadConfig()), audit.events);
  app.decorate('reloadConfiguration', reload);
  registerAdminRoutes(app, { authenticate: deps.authenticate, ...(reload === null ? {} : { reload }) });
  registerAdminRecordingsRoutes(app, { authenticate: deps.authenticate, spool: storage?.recording.spool });
  // Spelled out rather than spread: a spread would copy today's config and lose the reload getter.
  await registerTunnelRoute(app, {
    get config() {
      return live.get();
    },
    verifier: deps.verifier,
    authenticate: deps.authenticate,
    readiness: deps.readiness,
    store: deps.store,
    recording: deps.recording,
    protocols,
    grants: approvals.grants,
    notices: approvals.notices,
    // The approval system's store is the index, or its throwaway stand-in when there is no storage.
    tunnelSlots: approvals.store,
    replica: replicaId,
    clock,
  });

  return app;
}
