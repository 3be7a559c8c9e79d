import type { Exchange } from './exchange.js';

/** What policy decided about one exchange; `rule` names the policy that matched, if any. */
export type Decision =
  | { readonly action: 'allow'; readonly rule?: string }
  | { readonly action: 'deny'; readonly rule?: string; readonly reason?: string }
  | { readonly action: 'review'; readonly rule: string; readonly reviewers: readonly string[]; readonly timeoutMs?: number };

/** Policy stage: decides allow, deny or review for each exchange before anything is forwarded. */
export interface PolicyStage {
  decide(exchange: Exchange): Promise<Decision>;
}

const ALLOW: Decision = Object.freeze({ action: 'allow' });
const ALLOWED = Promise.resolve(ALLOW);

/** The default policy until rules are configured: allow every exchange. */
export const allowAllPolicy: PolicyStage = Object.freeze({
  decide: () => ALLOWED,
});
