import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from '../gateway-deps.js';

/** `GET /v1/me`: who the gateway takes the caller to be. */
export function registerMeRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/v1/me', async (req) => {
    const p = await deps.authenticate(req.headers);
    return {
      sub: p.sub,
      email: p.email ?? null,
      name: p.name ?? null,
      groups: p.groups,
      roles: p.roles,
      client_id: p.clientId ?? null,
      expires_at: p.expiresAt,
      issuer: p.issuer,
    };
  });
}
