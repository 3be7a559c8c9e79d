import type { IncomingHttpHeaders } from 'node:http';
import { SluiceError } from '../../shared/errors.js';
import type { Principal } from './principal.js';
import type { TokenVerifier } from './token-verifier.js';

/** The bearer token of an Authorization header, or ERR_AUTH_REQUIRED. */
export function bearerToken(headers: IncomingHttpHeaders): string {
  const value = headers.authorization;
  if (typeof value !== 'string' || value.length === 0) throw new SluiceError('ERR_AUTH_REQUIRED');
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(value);
  if (!m) throw new SluiceError('ERR_AUTH_REQUIRED', { message: 'The Authorization header must be "Bearer <token>"' });
  return m[1]!;
}

export type Authenticate = (headers: IncomingHttpHeaders) => Promise<Principal>;

/** Authenticate a request from its headers with the gateway's verifier. */
export function createAuthenticate(verifier: TokenVerifier): Authenticate {
  return (headers) => verifier.verify(bearerToken(headers));
}
