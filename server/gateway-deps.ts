import type { Config } from './config/schema.js';
import type { Authenticate } from './identity/authenticate.js';
import type { TokenVerifier } from './identity/token-verifier.js';
import type { Readiness } from './readiness.js';

/** What route modules receive: resolved once in buildApp, passed explicitly. */
export interface GatewayDeps {
  config: Config;
  verifier: TokenVerifier;
  authenticate: Authenticate;
  readiness: Readiness;
}
