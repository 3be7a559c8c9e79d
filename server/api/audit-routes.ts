import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import type { GatewayDeps } from '../gateway-deps.js';
import { checkpointCursorText, checkpointsOfDirectory, parseCheckpointCursor } from '../recording/directory-checkpoints.js';
import type { Recording } from '../recording/recording.js';
import { readsAllSessions } from '../recording/session-access.js';

const checkpointsQuery = z.strictObject({
  since: z.coerce.number().int().min(-1).default(-1),
  after: z.string().transform((v, ctx) => parseCheckpointCursor(v) ?? (ctx.addIssue({ code: 'custom', message: 'must be the "next" of an earlier page (sl_…:N)' }), z.NEVER)).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  format: z.enum(['json', 'jsonl']).default('json'),
});

function recordingOf(deps: GatewayDeps): Recording {
  const recording = deps.recording;
  if (recording === undefined) {
    throw new SluiceError('ERR_NOT_FOUND', { message: 'Recording is not configured on this gateway (no storage.master_key)' });
  }
  return recording;
}

/**
 * `GET /v1/audit/public-key`: the Ed25519 key that signs session checkpoints, public so anyone holding a
 * session file can check it offline (`sluice audit verify`).
 * `GET /v1/audit/checkpoints` (auditors, admins): the signed checkpoints of every seal log of the storage
 * directory (one per worker of `serve --workers N`), so a copy kept where the gateway cannot reach it later
 * pins all of them (`sluice audit verify --checkpoints`), whichever worker answered.
 */
export function registerAuditRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/v1/audit/public-key', async () => {
    const recording = recordingOf(deps);
    return { algorithm: 'Ed25519', fingerprint: recording.signingKey.fingerprint, public_key_pem: recording.publicKeyPem };
  });

  app.get('/v1/audit/checkpoints', async (req, reply) => {
    const principal = await deps.authenticate(req.headers);
    if (!readsAllSessions(principal)) throw new SluiceError('ERR_FORBIDDEN', { message: 'Only auditors and admins read the seal log checkpoints' });
    const parsed = checkpointsQuery.safeParse(req.query);
    if (!parsed.success) throw new SluiceError('ERR_BAD_REQUEST', { message: z.prettifyError(parsed.error).replace(/\n/g, '; ') });
    const { since, after, limit, format } = parsed.data;
    const recording = recordingOf(deps);
    const page = await checkpointsOfDirectory(recording.dir, { since, limit, ...(after === undefined ? {} : { after }) });
    if (after !== undefined && !page.logs.includes(after.log)) {
      throw new SluiceError('ERR_BAD_REQUEST', { message: `after: seal log ${after.log} is not one of this storage directory's` });
    }
    const { checkpoints } = page;
    if (format === 'jsonl') {
      reply.header('content-type', 'application/x-ndjson; charset=utf-8');
      return checkpoints.map((cp) => `${JSON.stringify(cp)}\n`).join('');
    }
    return {
      // The answering worker's log; each checkpoint names its own.
      log: recording.sealLog.id,
      logs: page.logs,
      checkpoints,
      next: page.next === undefined ? null : checkpointCursorText(page.next),
      // Paging by seq alone holds only while the directory has one seal log; with several it cannot say where to resume.
      next_since: page.next !== undefined && page.logs.length === 1 ? page.next.seq : null,
    };
  });
}
