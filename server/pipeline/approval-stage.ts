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
  /**
   * The whole request body as sent, read ahead and put back (it still goes upstream as a stream); undefined
   * when it is longer than the read-ahead. Asked for only when an approval may be bound to it.
   */
  readonly wholeBody?: () => Promise<Buffer | undefined>;
  /** The body as the recording keeps it, bounded and pretty-printed, for reviewers (review-preview.ts); undefined when none is kept or read. */
  readonly preview?: () => Promise<string | undefined>;
}

/** An answer the approval stage gives in place of the upstream's. */
export interface StageAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** How an exchange that needed review goes on: forwarded (approved now, or earlier), or answered without forwarding. */
export type HoldOutcome = { readonly kind: 'forward' } | { readonly kind: 'answer'; readonly answer: StageAnswer };

/** Approval stage: resolves when the exchange may go on (or is answered), rejects with a SluiceError otherwise. */
export interface ApprovalStage {
  hold(exchange: Exchange, decision: ReviewDecision, context?: HoldContext): Promise<HoldOutcome>;
}

/** The default approval stage: with no reviewers wired up, an exchange that needs review is refused (fail closed). */
export const refuseReviews: ApprovalStage = Object.freeze({
  hold: async (exchange: Exchange, decision: ReviewDecision): Promise<HoldOutcome> => {
    throw new SluiceError('ERR_FORBIDDEN', {
      message: `Policy "${decision.rule}" requires a review for connection "${exchange.connection.name}", and no approval stage is configured`,
      details: { connection: exchange.connection.name, rule: decision.rule },
    });
  },
});
