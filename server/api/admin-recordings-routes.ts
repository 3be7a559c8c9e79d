import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../../shared/errors.js';
import { hasRole, type Principal } from '../identity/principal.js';
import type { SessionSpool } from '../recording/session-spool.js';

/** What the recordings admin routes need. */
export interface AdminRecordingsRouteDeps {
  readonly authenticate: (headers: IncomingHttpHeaders) => Promise<Principal>;
  /** This gateway process's spool; undefined when the gateway has no storage. */
  readonly spool: SessionSpool | undefined;
}

const SESSION_ID = /^ses_[0-9A-Za-z]{1,64}$/;

async function admin(deps: AdminRecordingsRouteDeps, headers: IncomingHttpHeaders): Promise<void> {
  const principal = await deps.authenticate(headers);
  // The listing names sessions of every user and the reasons they failed: an operator's view, not an auditor's.
  if (!hasRole(principal, 'admin')) throw new SluiceError('ERR_FORBIDDEN', { message: 'Only admins can see and retry the recording spool' });
}

/**
 * `GET /v1/admin/recordings` (admins): the finished sessions this gateway process holds in its spool for the
 * archive, with their status (`spooled`, `uploading`, `quarantined`), bytes, attempts and last error.
 * `POST /v1/admin/recordings/:id/retry`: clears a session's quarantine and ships it now.
 */
export function registerAdminRecordingsRoutes(app: FastifyInstance, deps: AdminRecordingsRouteDeps): void {
  app.get('/v1/admin/recordings', async (req) => {
    await admin(deps, req.headers);
    const spool = deps.spool;
    const stats = spool?.stats();
    return {
      spool: {
        dir: spool?.root ?? null,
        // False when the spool is the archive (no storage.recordings): nothing ever waits in it.
        shipping: stats !== undefined,
        bytes: stats?.bytes ?? 0,
        max_bytes: stats?.maxBytes ?? null,
        admitting: stats?.admitting ?? true,
        spooled: stats?.spooled ?? 0,
        quarantined: stats?.quarantined ?? 0,
      },
      sessions: (spool?.shipments() ?? []).map((s) => ({
        session: s.session,
        file: s.name,
        status: s.status,
        bytes: s.bytes,
        attempts: s.attempts,
        last_error: s.lastError ?? null,
        next_attempt_at: s.nextAttemptAt === undefined ? null : new Date(s.nextAttemptAt).toISOString(),
        quarantine_reason: s.quarantineReason ?? null,
      })),
    };
  });

  app.post<{ Params: { id: string } }>('/v1/admin/recordings/:id/retry', async (req) => {
    await admin(deps, req.headers);
    const id = req.params.id;
    if (!SESSION_ID.test(id)) throw new SluiceError('ERR_BAD_REQUEST', { message: `"${id}" is not a session id (ses_…)` });
    const retried = deps.spool?.retry(id) ?? [];
    if (retried.length === 0) throw new SluiceError('ERR_NOT_FOUND', { message: `Session ${id} has nothing in this gateway's recording spool` });
    return { session: id, retried };
  });
}
