import { SluiceError } from '../../shared/errors.js';
import type { ApprovalStage, HoldContext, HoldOutcome } from '../pipeline/approval-stage.js';
import type { Exchange } from '../pipeline/exchange.js';
import type { DecisionBody } from '../pipeline/policy-stage.js';
import type { HeldRequests } from './held-requests.js';
import { prefersRespondAsync, requestBinding } from './request-binding.js';
import type { ReviewEvent } from './review-feed.js';
import { pendingReviewAnswer, reviewPath } from './review-json.js';
import type { SealedPreview } from './review-preview-seal.js';
import type { RequestSummary } from './review.js';

/**
 * What reviewers are shown of a held request: method, path (without the query, which may carry
 * secrets), the body's `model` and its size, and `preview`, the body as the recording keeps it (masked,
 * bounded, sealed under the master key; shown only when one review is asked for, see reviews-routes.ts).
 */
export function requestSummary(exchange: Exchange, body: DecisionBody | undefined, preview?: SealedPreview): RequestSummary {
  const q = exchange.path.indexOf('?');
  const json = body?.json;
  const model = json !== null && typeof json === 'object' && typeof (json as { model?: unknown }).model === 'string' ? (json as { model: string }).model : undefined;
  const declared = Number(exchange.headers['content-length']);
  return {
    method: exchange.method,
    path: q === -1 ? exchange.path : exchange.path.slice(0, q),
    ...(model === undefined ? {} : { model: model.slice(0, 200) }),
    size: body?.size ?? (Number.isSafeInteger(declared) && declared >= 0 ? declared : 0),
    ...(preview === undefined ? {} : { preview }),
  };
}

/**
 * The pipeline's approval stage. An exchange that is an approved request sent again (answered at once
 * earlier) goes on without a second hold; one whose caller sent `Prefer: respond-async` is answered 202
 * with its pending review; any other is held on this replica until its review is decided.
 */
/**
 * Seals a held request's preview for the index (review-preview-seal.ts); absent, no preview is kept (a
 * gateway without storage has no master key, and a prompt is never kept in clear).
 */
export type PreviewSealer = (text: string, requester: string) => SealedPreview;

export function createApprovalStage(held: HeldRequests<Exchange>, seal?: PreviewSealer): ApprovalStage {
  return {
    async hold(exchange, decision, context: HoldContext = {}): Promise<HoldOutcome> {
      const answerAtOnce = prefersRespondAsync(exchange.headers);
      // The body is read (and, for a caller waiting for 100 Continue, asked for) only when an approval may hang on it.
      const bound = answerAtOnce || (await held.awaitsResend(exchange, decision.rule));
      const body = bound ? await context.wholeBody?.() : undefined;
      const binding = body === undefined ? undefined : requestBinding(exchange, decision.rule, body);
      if (binding !== undefined && (await held.claimResend(exchange, decision.rule, binding)) !== undefined) return FORWARD;
      const preview = seal === undefined ? undefined : await context.preview?.();
      const summary = requestSummary(exchange, context.body, preview === undefined ? undefined : seal!(preview, exchange.principal.sub));
      if (!answerAtOnce) {
        await held.hold({ exchange, decision, summary, signal: context.signal });
        return FORWARD;
      }
      if (binding === undefined) {
        // An approval must name the exact request it lets through, and only a body read whole can be named.
        throw new SluiceError('ERR_BODY_TOO_LARGE', {
          message:
            `Policy "${decision.rule}" needs a review of this request, and a request answered at once (Prefer: respond-async) ` +
            'can be sent again only when its body fits in policy_read_ahead; send it without that preference to wait for the review',
          details: { connection: exchange.connection.name, rule: decision.rule },
        });
      }
      const review = await held.defer({ exchange, decision, summary, binding });
      return {
        kind: 'answer',
        answer: {
          status: 202,
          headers: { 'preference-applied': 'respond-async', location: reviewPath(review.id) },
          body: JSON.stringify(pendingReviewAnswer(review)),
        },
      };
    },
  };
}

const FORWARD: HoldOutcome = Object.freeze({ kind: 'forward' });

/**
 * Writes review events into the held exchange's session. Partial approvals and withdrawals have no
 * record type of their own: the store keeps the former, and a withdrawn exchange ends with an
 * `exchange.error` (ERR_REVIEW_ABANDONED) that the pipeline records.
 */
export function reviewRecorder(): (exchange: Exchange, event: ReviewEvent) => Promise<void> {
  return async (exchange, event) => {
    const r = event.review;
    const by = r.resolvedBy === undefined ? undefined : (r.resolvedBy.email ?? r.resolvedBy.sub);
    switch (event.type) {
      case 'review.created':
        return exchange.recording.recordReview({ type: 'review.requested', reviewId: r.id, note: `rule ${r.rule}; reviewers ${r.reviewers.join(', ')}` });
      case 'review.approved': {
        const approvers = r.approvals.length > 1 ? `approved by ${r.approvals.map((a) => a.email ?? a.sub).join(', ')}` : r.resolution;
        // A re-send says which request was approved: the approval was given to that one, in its own session.
        const resent = r.resent?.requestId === exchange.id ? `sent again; approved for ${r.requestId ?? 'an earlier request'} (session ${r.sessionId ?? '?'})` : undefined;
        return exchange.recording.recordReview({
          type: 'review.approved',
          reviewId: r.id,
          by,
          note: [resent, approvers].filter((n) => n !== undefined && n !== '').join('; ') || undefined,
        });
      }
      case 'review.rejected':
        return exchange.recording.recordReview({ type: 'review.rejected', reviewId: r.id, by, note: r.resolution });
      case 'review.expired':
        return exchange.recording.recordReview({ type: 'review.expired', reviewId: r.id });
      default:
        return;
    }
  };
}
