import type { TokenVerifier } from './identity/token-verifier.js';

export interface ReadinessCheck {
  ok: boolean;
  message?: string;
}

export interface Readiness {
  check(): Promise<Record<string, ReadinessCheck>>;
}

/** Readiness from the identity provider's keys (cached briefly so probes stay cheap) and, when configured, the recording storage. */
export function createReadiness(options: { verifier: TokenVerifier; cacheMs?: number; recording?: { health(): Promise<ReadinessCheck> } }): Readiness {
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
      // Not cached: a refused exchange must turn the gateway unready at once, and a recovered disk ready again.
      const checks: Record<string, ReadinessCheck> = { identity: cached.value };
      if (options.recording !== undefined) checks.recording = await options.recording.health();
      return checks;
    },
  };
}
