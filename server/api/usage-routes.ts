import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import type { UsageReportJson } from '../../shared/usage-api.js';
import type { GatewayDeps } from '../gateway-deps.js';
import { listingUser } from '../recording/session-access.js';
import { usageReport } from '../usage/usage-report.js';

/** A time: ISO 8601 (a date alone is its UTC midnight), or epoch seconds or milliseconds (below 10^12: seconds). */
const instant = z
  .string()
  .trim()
  .transform((v, ctx) => {
    if (/^\d+(\.\d+)?$/.test(v)) {
      const n = Number(v);
      return n < 1e12 ? Math.round(n * 1000) : Math.round(n);
    }
    const ms = Date.parse(v);
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: 'must be an ISO 8601 time or epoch seconds/milliseconds' });
      return z.NEVER;
    }
    return ms;
  });

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
    const parsed = usageQuery.safeParse(req.query ?? {});
    if (!parsed.success) throw new SluiceError('ERR_BAD_REQUEST', { message: `Invalid query: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}` });
    const q = parsed.data;
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
