import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from '../gateway-deps.js';
import { principalJson } from '../identity/principal.js';

/** `GET /v1/me`: who the gateway takes the caller to be. */
export function registerMeRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/v1/me', async (req) => {
    const p = await deps.authenticate(req.headers);
    return { ...principalJson(p), expires_at: p.expiresAt };
  });
}
