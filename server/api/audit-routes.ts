import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import type { GatewayDeps } from '../gateway-deps.js';
import type { Recording } from '../recording/recording.js';
import { readsAllSessions } from '../recording/session-access.js';

const checkpointsQuery = z.strictObject({
  since: z.coerce.number().int().min(-1).default(-1),
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
 * `GET /v1/audit/checkpoints` (auditors, admins): the signed checkpoints of the seal log, so a copy can
 * be kept where the gateway cannot reach it and later pin the log (`sluice audit verify --checkpoints`).
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
    const { since, limit, format } = parsed.data;
    const sealLog = recordingOf(deps).sealLog;
    const checkpoints = await sealLog.checkpointsAfter(since, limit);
    if (format === 'jsonl') {
      reply.header('content-type', 'application/x-ndjson; charset=utf-8');
      return checkpoints.map((cp) => `${JSON.stringify(cp)}\n`).join('');
    }
    return {
      log: sealLog.id,
      checkpoints,
      // A full page may have more after it: ask again from its last seq.
      next_since: checkpoints.length === limit ? checkpoints.at(-1)!.seq : null,
    };
  });
}
