import type { ErrorCode } from './errors.js';

/**
 * Refusals by a rule or a person (access, policy, a reviewer, a grant, a quota): what the session index counts as
 * `denied`, every other error as `errors`. One list, read by the gateway's index and by every view built
 * from the records, so `sessions show`, `replay --json` and the TUI count the same exchanges.
 */
export const DENIAL_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'ERR_FORBIDDEN',
  'ERR_CONNECTION_FORBIDDEN',
  'ERR_POLICY_DENIED',
  'ERR_POLICY_ERROR',
  'ERR_REVIEW_REJECTED',
  'ERR_REVIEW_EXPIRED',
  'ERR_GRANT_REQUIRED',
  'ERR_QUOTA_EXCEEDED',
]);

/** Whether a recorded error code is a denial (see `DENIAL_CODES`). */
export function isDenial(code: string): boolean {
  return (DENIAL_CODES as ReadonlySet<string>).has(code);
}
