import type { Exchange } from './exchange.js';

/** What policy decided about one exchange; `rule` names the policy that matched, if any. */
/** `mask` adds answer profiles; `maskRequest` adds request profiles (a rule's `mask_request`). */
export type Decision =
  | { readonly action: 'allow'; readonly rule?: string; readonly mask?: readonly string[]; readonly maskRequest?: readonly string[] }
  | { readonly action: 'deny'; readonly rule?: string; readonly reason?: string; readonly mask?: readonly string[]; readonly maskRequest?: readonly string[] }
  | {
      readonly action: 'review';
      readonly rule: string;
      readonly reviewers: readonly string[];
      readonly timeoutMs?: number;
      /** Distinct reviewers needed; default 1. */
      readonly minApprovals?: number;
      /** The rule's message for reviewers. */
      readonly note?: string;
      readonly mask?: readonly string[];
      readonly maskRequest?: readonly string[];
    };

/**
 * What policy sees of the request body: the parsed JSON (null when absent, not JSON or too long) and its size.
 * `json` is the body as it will leave (masked by the connection's request profiles); `raw_json` the body as
 * sent, when it differs (absent: the body leaves as sent).
 */
export interface DecisionBody {
  readonly json: unknown;
  readonly raw_json?: unknown;
  readonly size: number;
}

/** Policy stage: decides allow, deny or review for each exchange before anything is forwarded. */
export interface PolicyStage {
  /** `readBody` reads the body ahead (bounded); the stage calls it only when the decision depends on the body. */
  decide(exchange: Exchange, readBody?: () => Promise<DecisionBody>): Promise<Decision>;
}

const ALLOW: Decision = Object.freeze({ action: 'allow' });
const ALLOWED = Promise.resolve(ALLOW);

/** The default policy until rules are configured: allow every exchange. */
export const allowAllPolicy: PolicyStage = Object.freeze({
  decide: () => ALLOWED,
});
