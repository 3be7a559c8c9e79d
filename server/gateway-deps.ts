import type { Config } from './config/schema.js';
import type { Authenticate } from './identity/authenticate.js';
import type { TokenVerifier } from './identity/token-verifier.js';
import type { Readiness } from './readiness.js';
import type { Recording } from './recording/recording.js';
import type { Store } from './store/store.js';

/** What route modules receive: resolved once in buildApp, passed explicitly. */
export interface GatewayDeps {
  config: Config;
  verifier: TokenVerifier;
  authenticate: Authenticate;
  readiness: Readiness;
  /** The session index (with reviews and grants); present whenever a master key is configured. */
  store?: Store;
  /** Session files: open, seal, read keys, public key; present whenever a master key is configured. */
  recording?: Recording;
}
