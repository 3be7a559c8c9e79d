import { isDeepStrictEqual } from 'node:util';
import { SluiceError } from '../../shared/errors.js';
import { keyRingFromSettings } from '../recording/key-ring.js';
import type { Config } from './schema.js';

/**
 * Sections a running gateway cannot change: sockets, keys and storage are set up once at start, and so
 * are the token verifier's role mapping and the compiled masking profiles.
 */
export const RESTART_SECTIONS = ['listen', 'public_url', 'tls', 'identity', 'roles', 'storage', 'tunnel', 'masking', 'masking_profiles', 'policy_read_ahead', 'replica', 'metrics_listen', 'metrics', 'telemetry', 'grpc_listen'] as const satisfies readonly (keyof Config)[];

/** What a reload did. */
export interface ReloadReport {
  /** Top-level keys whose new value is in effect. */
  readonly applied: string[];
  /** Top-level keys that changed but keep their running value until a restart. */
  readonly restartRequired: string[];
}

/** The gateway's current configuration; readers call `get()` per request so a reload takes effect. */
export interface LiveConfig {
  get(): Config;
  /**
   * Swaps in an already validated config, keeping the running value of every restart-only section.
   * Throws ERR_CONFIG_INVALID, and changes nothing, when the result is one the running gateway cannot
   * serve safely (see `checkRecordable`).
   */
  apply(next: Config): ReloadReport;
  /** Returns the function that unsubscribes. */
  onChange(listener: (config: Config) => void): () => void;
}

/** Creates the holder with the config the gateway started with. */
export function createLiveConfig(initial: Config): LiveConfig {
  let current = initial;
  const listeners = new Set<(config: Config) => void>();
  return {
    get: () => current,
    apply(next) {
      const merged: Record<string, unknown> = { ...next };
      const applied: string[] = [];
      const restartRequired: string[] = [];
      const keys = new Set([...Object.keys(current), ...Object.keys(next)]);
      for (const key of keys) {
        const before = (current as Record<string, unknown>)[key];
        const after = (next as Record<string, unknown>)[key];
        if (isDeepStrictEqual(before, after)) continue;
        if ((RESTART_SECTIONS as readonly string[]).includes(key)) {
          restartRequired.push(key);
          merged[key] = before;
        } else {
          applied.push(key);
        }
      }
      checkRecordable(merged as Config);
      current = Object.freeze(merged) as Config;
      for (const listener of [...listeners]) listener(current);
      return { applied: applied.sort(), restartRequired: restartRequired.sort() };
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/**
 * A gateway started without a master key opened no storage (it had no connections, so nothing to
 * record), and `storage` changes only with a restart: connections added by a reload would carry traffic
 * that nothing records. Refused, as the start refuses connections without a key.
 */
function checkRecordable(config: Config): void {
  if (config.connections.length === 0 || keyRingFromSettings(config.storage) !== undefined) return;
  const problem =
    'connections: this gateway was started without storage.master_key, so it records nothing and cannot take connections by reload (nothing may flow unrecorded); set storage.master_key and restart it';
  throw new SluiceError('ERR_CONFIG_INVALID', { message: `config has 1 problem:\n  ${problem}`, details: { problems: [problem] } });
}
