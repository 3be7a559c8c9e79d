import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../../shared/errors.js';
import type { GatewayDeps } from '../gateway-deps.js';

/**
 * `GET /v1/audit/public-key`: the Ed25519 key that signs session checkpoints, public so anyone holding a
 * session file can check it offline (`sluice audit verify`).
 */
export function registerAuditRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/v1/audit/public-key', async () => {
    const recording = deps.recording;
    if (recording === undefined) {
      throw new SluiceError('ERR_NOT_FOUND', { message: 'Recording is not configured on this gateway (no storage.master_key)' });
    }
    return { algorithm: 'Ed25519', fingerprint: recording.signingKey.fingerprint, public_key_pem: recording.publicKeyPem };
  });
}
