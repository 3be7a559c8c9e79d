import type { PolicyUsage } from '../policy/policy-input.js';
import type { QuotaLimit } from './quota-config.js';

/** What rules see as `usage.<name>`, for each quota limit whose window it counts in. */
export const USAGE_OF_LIMIT: Readonly<Record<QuotaLimit, keyof PolicyUsage>> = {
  requests_per_minute: 'requests_per_minute',
  tokens_per_day: 'tokens_today',
  tokens_per_month: 'tokens_this_month',
  input_tokens_per_day: 'input_tokens_today',
  output_tokens_per_day: 'output_tokens_today',
};

/**
 * The key of a caller's own usage counter, kept whatever the `quotas:` rules while a policy reads `usage`.
 * `@` is no letter of a rule name, so no rule's counter can share it.
 */
export function usageKey(limit: QuotaLimit, sub: string): string {
  return ['@usage', limit, encodeURIComponent(`user:${sub}`)].join('|');
}
