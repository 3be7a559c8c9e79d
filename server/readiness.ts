import { isSluiceError } from '../shared/errors.js';
import type { TokenVerifier } from './identity/token-verifier.js';

export interface ReadinessCheck {
  ok: boolean;
  /** What failed and what was tried: the URL or file, and the error. */
  message?: string;
  /** The error code of the failure, when it has one. */
  code?: string;
}

export interface Readiness {
  check(): Promise<Record<string, ReadinessCheck>>;
}

/**
 * Readiness from the identity provider's keys (cached briefly so probes stay cheap) and, when configured,
 * the recording storage and the store (asked per probe, so a database that comes back makes the gateway
 * ready again without a restart).
 */
export function createReadiness(options: {
  verifier: TokenVerifier;
  cacheMs?: number;
  recording?: { health(): Promise<ReadinessCheck> };
  store?: { ping(): Promise<void> };
}): Readiness {
  const cacheMs = options.cacheMs ?? 5000;
  let cached: { at: number; value: ReadinessCheck } | undefined;
  return {
    async check() {
      if (!cached || Date.now() - cached.at > cacheMs) {
        let value: ReadinessCheck;
        try {
          await options.verifier.ready();
          value = { ok: true };
        } catch (err) {
          // The verifier's errors name the URL they tried; anything else is wrapped so the probe still says where.
          value = isSluiceError(err)
            ? { ok: false, code: err.code, message: err.message }
            : { ok: false, code: 'ERR_IDP_UNAVAILABLE', message: `The identity provider check failed: ${(err as Error)?.message ?? String(err)}` };
        }
        cached = { at: Date.now(), value };
      }
      // Not cached: a refused exchange must turn the gateway unready at once, and a recovered disk ready again.
      const checks: Record<string, ReadinessCheck> = { identity: cached.value };
      if (options.recording !== undefined) checks.recording = await options.recording.health();
      if (options.store !== undefined) checks.store = await storeHealth(options.store);
      return checks;
    },
  };
}

/** The store's answer to a ping, as a check that names the store and why it failed. */
async function storeHealth(store: { ping(): Promise<void> }): Promise<ReadinessCheck> {
  try {
    await store.ping();
    return { ok: true };
  } catch (err) {
    return isSluiceError(err)
      ? { ok: false, code: err.code, message: err.message }
      : { ok: false, code: 'ERR_STORE_UNAVAILABLE', message: `The store cannot be reached: ${(err as Error)?.message ?? String(err)}` };
  }
}
