import { SluiceError } from '../../shared/errors.js';
import type { Exchange } from './exchange.js';
import type { Decision, DecisionBody } from './policy-stage.js';

/** A policy decision that holds the exchange for a human reviewer. */
export type ReviewDecision = Extract<Decision, { action: 'review' }>;

/** What the pipeline knows while an exchange is held. */
export interface HoldContext {
  /** Aborts when the caller goes away, so the review is withdrawn rather than left pending. */
  readonly signal?: AbortSignal;
  /** The body as policy saw it, when policy read it (reviewers are shown the model and size). */
  readonly body?: DecisionBody;
}

/** Approval stage: resolves when a reviewer approves the held exchange, rejects with a SluiceError otherwise. */
export interface ApprovalStage {
  hold(exchange: Exchange, decision: ReviewDecision, context?: HoldContext): Promise<void>;
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
