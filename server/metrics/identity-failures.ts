import { isSluiceError } from '../../shared/errors.js';
import type { Authenticate } from '../identity/authenticate.js';
import type { GatewayMetrics } from './gateway-metrics.js';

/** The gateway's authenticate, counting each refusal by its code (every route and the tunnel go through it). */
export function countingIdentityFailures(authenticate: Authenticate, metrics: GatewayMetrics): Authenticate {
  return async (headers) => {
    try {
      return await authenticate(headers);
    } catch (err) {
      metrics.identityFailures.inc({ code: isSluiceError(err) ? err.code : 'ERR_INTERNAL' });
      throw err;
    }
  };
}
