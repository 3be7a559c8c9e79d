import type { ReviewEvent } from '../approval/review-feed.js';
import { isGrantSummary } from '../approval/review.js';
import type { Authenticate } from '../identity/authenticate.js';
import type { OutcomeListener } from '../metrics/exchange-observer.js';
import { isSluiceError } from '../../shared/errors.js';
import type { AuditEvents } from './audit-events.js';
import { AUDIT_EVENT_KINDS, type AuditEventKind } from './audit-sinks-config.js';

/** One `exchange` event per exchange, from its outcome as recorded: counts and codes, never bodies or header values. */
export function auditExchangeListener(audit: AuditEvents): OutcomeListener {
  // Built field by field in the documented order rather than with spreads: this runs once per exchange.
  return ({ exchange: x, decision, code, end, forwardedAt, answer }) => {
    const masking: Record<string, number> = {};
    if (end?.masking !== undefined) for (const f of end.masking) masking[f.entity] = (masking[f.entity] ?? 0) + f.count;
    const usage = answer?.usage;
    const p = x.principal;
    const fields: { session: string; [field: string]: unknown } = {
      session: x.session.id,
      request: x.id,
      user: p.clientId === undefined ? { sub: p.sub, groups: p.groups } : { sub: p.sub, groups: p.groups, client_id: p.clientId },
      connection: x.connection.name,
      via: x.via,
      method: x.method,
    };
    if (answer?.model !== undefined) fields.model = answer.model;
    fields.tokens = { in: usage?.prompt_tokens ?? 0, out: usage?.completion_tokens ?? 0 };
    fields.decision = decision;
    fields.code = code;
    fields.status = end?.status ?? 0;
    fields.complete = end?.complete ?? false;
    fields.masking = masking;
    fields.bytes = { in: end?.requestBytes ?? 0, out: end?.responseBytes ?? 0 };
    fields.duration_ms = end?.durationMs ?? Date.now() - x.startedAt;
    if (forwardedAt !== undefined) fields.upstream_ms = Math.max(0, x.startedAt + (end?.durationMs ?? 0) - forwardedAt);
    audit.emit('exchange', fields);
  };
}

/** The audit kind of a review change: `review.created` is the request for review; grant changes keep their names. */
function reviewKind(type: string): AuditEventKind | undefined {
  const kind = type === 'review.created' ? 'review.requested' : type;
  return (AUDIT_EVENT_KINDS as readonly string[]).includes(kind) ? (kind as AuditEventKind) : undefined;
}

/**
 * Audit events of a review change, told once by the replica that made it (the approval service's
 * notifications, not the shared feed every replica hears): `review.*`, and `grant.created` when an access
 * request is approved. Reasons and notes stay out: they are free text a requester typed.
 */
export function auditReviewListener(audit: AuditEvents): (event: ReviewEvent) => void {
  return (event) => {
    const r = event.review;
    const kind = reviewKind(event.type);
    const by = event.actor === undefined ? {} : { by: event.actor.sub };
    if (kind !== undefined) {
      audit.emit(kind, {
        ...(r.sessionId === undefined ? {} : { session: r.sessionId }),
        review: r.id,
        review_kind: r.kind,
        status: r.status,
        requester: r.requester.sub,
        connection: r.connection,
        rule: r.rule,
        ...(r.requestId === undefined ? {} : { request: r.requestId }),
        ...(event.grant === undefined ? {} : { grant: event.grant.id }),
        ...by,
      });
    }
    if (event.type === 'review.approved' && r.kind === 'grant') {
      audit.emit('grant.created', {
        review: r.id,
        sub: r.requester.sub,
        connection: r.connection,
        approved_by: r.approvals.map((a) => a.sub),
        ...(isGrantSummary(r.summary) ? { duration_ms: r.summary.durationMs } : {}),
        ...by,
      });
    }
  };
}

/** The gateway's authenticate, telling each refusal as `identity.failure` with its code: never the token. */
export function auditingAuthenticate(authenticate: Authenticate, audit: AuditEvents): Authenticate {
  if (!audit.enabled) return authenticate;
  return async (headers) => {
    try {
      return await authenticate(headers);
    } catch (err) {
      audit.emit('identity.failure', { code: isSluiceError(err) ? err.code : 'ERR_INTERNAL' });
      throw err;
    }
  };
}
