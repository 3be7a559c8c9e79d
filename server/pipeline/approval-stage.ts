import { SluiceError } from '../../shared/errors.js';
import type { Exchange } from './exchange.js';
import type { Decision } from './policy-stage.js';

/** A policy decision that holds the exchange for a human reviewer. */
export type ReviewDecision = Extract<Decision, { action: 'review' }>;

/** Approval stage: resolves when a reviewer approves the held exchange, rejects with a SluiceError otherwise. */
export interface ApprovalStage {
  hold(exchange: Exchange, decision: ReviewDecision): Promise<void>;
}

/** The default approval stage: with no reviewers wired up, an exchange that needs review is refused (fail closed). */
export const refuseReviews: ApprovalStage = Object.freeze({
  hold: async (exchange: Exchange, decision: ReviewDecision): Promise<void> => {
    throw new SluiceError('ERR_FORBIDDEN', {
      message: `Policy "${decision.rule}" requires a review for connection "${exchange.connection.name}", and no approval stage is configured`,
      details: { connection: exchange.connection.name, rule: decision.rule },
    });
  },
});
