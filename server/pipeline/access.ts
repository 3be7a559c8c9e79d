import { SluiceError } from '../../shared/errors.js';
import { inAnyGroup } from '../identity/principal.js';
import type { Exchange } from './exchange.js';

/** Access stage: the principal must be in one of the connection's `allow_groups`. */
export function checkAccess(exchange: Exchange): void {
  if (!inAnyGroup(exchange.principal, exchange.connection.allow_groups)) {
    throw new SluiceError('ERR_CONNECTION_FORBIDDEN', {
      message: `You are not allowed to use connection "${exchange.connection.name}"`,
      details: { connection: exchange.connection.name },
    });
  }
}
