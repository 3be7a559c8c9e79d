import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import type { UsageReportJson } from '../../shared/usage-api.js';
import type { GatewayDeps } from '../gateway-deps.js';
import { listingUser } from '../recording/session-access.js';
import { usageReport } from '../usage/usage-report.js';
import { instant, parseQuery } from './query-params.js';

const usageQuery = z.strictObject({
  user: z.string().min(1).optional(),
  connection: z.string().min(1).optional(),
  since: instant.optional(),
  by: z.enum(['model', 'user', 'connection']).default('model'),
});

/**
 * `GET /v1/usage?[user=][&connection=][&since=][&by=model|user|connection]`: requests and input/output
 * tokens from the session index. Auditors and admins see everyone's; any other caller only their own, and
 * asking for another user's is refused (as for session listings), never silently narrowed.
 */
export function registerUsageRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/v1/usage', async (req): Promise<UsageReportJson> => {
    const principal = await deps.authenticate(req.headers);
    const q = parseQuery(usageQuery, req.query);
    if (deps.store === undefined) throw new SluiceError('ERR_NOT_FOUND', { message: 'Recording is not configured on this gateway (no storage.master_key): there is no usage to report' });
    const user = listingUser(principal, q.user);
    return usageReport(deps.store, {
      by: q.by,
      ...(user === undefined ? {} : { user }),
      ...(q.connection === undefined ? {} : { connection: q.connection }),
      ...(q.since === undefined ? {} : { since: q.since }),
    });
  });
}
