import type { FastifyInstance } from 'fastify';
import { VERSION } from '../../shared/version.js';
import type { GatewayDeps } from '../gateway-deps.js';
import type { ReadinessCheck } from '../readiness.js';
import { keyCanaryHealth } from '../recording/key-canary.js';

/** `GET /v1/info` (public discovery for `sluice login`), `/healthz` and `/readyz`. */
export function registerSystemRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/v1/info', async () => ({
    name: 'sluice',
    version: VERSION,
    issuer: deps.config.identity.issuer,
    cli_client_id: deps.config.identity.cli_client_id,
    audience: deps.config.identity.audience,
    // The address clients should use, when it differs from the one the gateway listens on (a load balancer).
    public_url: deps.config.public_url ?? null,
  }));

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_req, reply) => {
    const checks: Record<string, ReadinessCheck> = await deps.readiness.check();
    // The key canary on disk, read per probe: a gateway running on a data directory its keys no longer fit is not ready.
    if (deps.recording !== undefined) checks.master_key = await keyCanaryHealth(deps.recording.dir, deps.recording.keyRing);
    const ready = Object.values(checks).every((c) => c.ok);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unready', checks });
  });
}
