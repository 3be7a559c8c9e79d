import { validateConfig } from '../../server/config/load.js';

/** The problems `validateConfig` reports for `raw` (the details of its ERR_CONFIG_INVALID), or none when it accepts it. */
export function configProblems(raw: unknown): string[] {
  try {
    validateConfig(raw);
    return [];
  } catch (err) {
    return ((err as { details?: { problems?: string[] } }).details?.problems ?? []) as string[];
  }
}
