import type { FastifyInstance } from 'fastify';
import type { ConnectionConfig } from '../config/schema.js';
import { inAnyGroup, type Principal } from '../identity/principal.js';
import type { GatewayDeps } from '../gateway-deps.js';

/** What a caller may learn of a connection: never its upstream credentials. */
export function describeConnection(c: ConnectionConfig) {
  return {
    name: c.name,
    type: c.type,
    description: c.description ?? null,
    labels: c.labels,
    applies: {
      masking: c.masking,
      record: c.record,
      max_body: c.type === 'http' ? c.max_body : null,
    },
  };
}

/** Connections the principal may use. */
export function connectionsFor(principal: Principal, connections: readonly ConnectionConfig[]): ConnectionConfig[] {
  return connections.filter((c) => inAnyGroup(principal, c.allow_groups));
}

/** `GET /v1/connections`: the connections the caller may use and what applies to each. */
export function registerConnectionsRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/v1/connections', async (req) => {
    const principal = await deps.authenticate(req.headers);
    return { connections: connectionsFor(principal, deps.config.connections).map(describeConnection) };
  });
}
