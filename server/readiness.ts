import type { TokenVerifier } from './identity/token-verifier.js';

export interface ReadinessCheck {
  ok: boolean;
  message?: string;
}

export interface Readiness {
  check(): Promise<Record<string, ReadinessCheck>>;
}

/** Readiness from the identity provider's keys; results are cached briefly so probes stay cheap. */
export function createReadiness(options: { verifier: TokenVerifier; cacheMs?: number }): Readiness {
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
          value = { ok: false, message: `identity provider keys unavailable: ${(err as Error).message}` };
        }
        cached = { at: Date.now(), value };
      }
      return { identity: cached.value };
    },
  };
}
