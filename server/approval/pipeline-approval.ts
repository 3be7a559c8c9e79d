import type { ApprovalStage, HoldContext } from '../pipeline/approval-stage.js';
import type { Exchange } from '../pipeline/exchange.js';
import type { DecisionBody } from '../pipeline/policy-stage.js';
import type { Recorder } from '../pipeline/recorder.js';
import type { HeldRequests } from './held-requests.js';
import type { ReviewEvent } from './review-feed.js';
import type { RequestSummary } from './review.js';

/**
 * What reviewers are shown of a held request: method, path (without the query, which may carry
 * secrets), the body's `model` and its size. Never the body itself: prompts reach reviewers only
 * once the masking stage can summarize them.
 */
export function requestSummary(exchange: Exchange, body: DecisionBody | undefined): RequestSummary {
  const q = exchange.path.indexOf('?');
  const json = body?.json;
  const model = json !== null && typeof json === 'object' && typeof (json as { model?: unknown }).model === 'string' ? (json as { model: string }).model : undefined;
  const declared = Number(exchange.headers['content-length']);
  return {
    method: exchange.method,
    path: q === -1 ? exchange.path : exchange.path.slice(0, q),
    ...(model === undefined ? {} : { model: model.slice(0, 200) }),
    size: body?.size ?? (Number.isSafeInteger(declared) && declared >= 0 ? declared : 0),
  };
}

/** The pipeline's approval stage: holds the exchange on this replica until its review is decided. */
export function createApprovalStage(held: HeldRequests<Exchange>): ApprovalStage {
  return {
    async hold(exchange, decision, context: HoldContext = {}) {
      await held.hold({ exchange, decision, summary: requestSummary(exchange, context.body), signal: context.signal });
    },
  };
}

/**
 * Writes review events into the held exchange's session. Partial approvals and withdrawals have no
 * record type of their own: the review store keeps the former, and a withdrawn exchange ends with an
 * `exchange.error` (ERR_REVIEW_ABANDONED) that the pipeline records.
 */
export function reviewRecorder(recorder: Recorder): (exchange: Exchange, event: ReviewEvent) => Promise<void> {
  return async (exchange, event) => {
    const r = event.review;
    const by = r.resolvedBy === undefined ? undefined : (r.resolvedBy.email ?? r.resolvedBy.sub);
    switch (event.type) {
      case 'review.created':
        return recorder.emit({ type: 'review.requested', exchange, reviewId: r.id, note: `rule ${r.rule}; reviewers ${r.reviewers.join(', ')}` });
      case 'review.approved':
        return recorder.emit({
          type: 'review.approved',
          exchange,
          reviewId: r.id,
          by,
          note: r.approvals.length > 1 ? `approved by ${r.approvals.map((a) => a.email ?? a.sub).join(', ')}` : r.resolution,
        });
      case 'review.rejected':
        return recorder.emit({ type: 'review.rejected', exchange, reviewId: r.id, by, note: r.resolution });
      case 'review.expired':
        return recorder.emit({ type: 'review.expired', exchange, reviewId: r.id });
      default:
        return;
    }
  };
}
