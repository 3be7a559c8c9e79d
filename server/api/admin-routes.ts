import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../../shared/errors.js';
import type { AuditedReload } from '../audit-sinks/audited-reload.js';
import { hasRole, type Principal } from '../identity/principal.js';

/** What the admin routes need. */
export interface AdminRouteDeps {
  readonly authenticate: (headers: IncomingHttpHeaders) => Promise<Principal>;
  /**
   * Re-reads and validates the configuration and applies it, audited as done `by` the admin; throws
   * (ERR_CONFIG_INVALID, …) and changes nothing when the new one is invalid. Undefined when the gateway was
   * built without a config file.
   */
  readonly reload?: AuditedReload;
}

/** `POST /v1/admin/reload` (admins): the same as SIGHUP. */
export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  app.post('/v1/admin/reload', async (req) => {
    const principal = await deps.authenticate(req.headers);
    if (!hasRole(principal, 'admin')) throw new SluiceError('ERR_FORBIDDEN', { message: 'Only admins can reload the configuration' });
    if (deps.reload === undefined) {
      throw new SluiceError('ERR_BAD_REQUEST', { message: 'This gateway was started without a configuration file, so there is nothing to re-read' });
    }
    const report = await deps.reload(principal.sub);
    req.log.info({ sub: principal.sub, applied: report.applied, restart_required: report.restartRequired }, 'configuration reloaded');
    return { reloaded: true, applied: report.applied, restart_required: report.restartRequired };
  });
}
