import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { grantReviewers } from '../approval/approval-config.js';
import type { ApprovalService } from '../approval/approval-service.js';
import type { ReviewEvent } from '../approval/review-feed.js';
import { formatDuration, grantJson, reviewJson } from '../approval/review-json.js';
import { parseDuration } from '../config/duration.js';
import type { Config } from '../config/schema.js';
import { inAnyGroup, type Principal } from '../identity/principal.js';

/** What the grants routes need. */
export interface GrantsRouteDeps {
  readonly authenticate: (headers: IncomingHttpHeaders) => Promise<Principal>;
  readonly approvals: ApprovalService;
  /** Read per request, so a reload takes effect. */
  readonly config: () => Pick<Config, 'connections' | 'roles'>;
  readonly clock?: () => number;
  /** Told of each revocation once, on the replica that made it (webhooks); other replicas hear it on the store's feed. */
  readonly notify?: (event: ReviewEvent) => void;
}

const requestBody = z.strictObject({
  connection: z.string().min(1),
  duration: z.string().regex(/^\d+(s|m|h|d)$/, 'must be a duration such as 30m, 2h or 1d'),
  reason: z.string().trim().min(1, 'is required: reviewers decide on it').max(500),
});

const revokeBody = z.strictObject({ reason: z.string().trim().min(1).max(500).optional() });

const listQuery = z.object({ reviewing: z.enum(['true', 'false']).optional() });

/**
 * `POST /v1/grants` opens an access request (a review of kind `grant`) for a connection with
 * `requires_grant: true`; `GET /v1/grants` lists the caller's grants and access requests (with
 * `?reviewing=true`, the grants in force on connections whose grants the caller reviews);
 * `POST /v1/grants/:id/revoke` ends a grant early.
 */
export function registerGrantsRoutes(app: FastifyInstance, deps: GrantsRouteDeps): void {
  const clock = deps.clock ?? Date.now;

  app.post('/v1/grants', async (req, reply) => {
    const principal = await deps.authenticate(req.headers);
    const parsed = requestBody.safeParse(req.body ?? {});
    if (!parsed.success) throw new SluiceError('ERR_BAD_REQUEST', { message: `Invalid access request: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}` });
    const body = parsed.data;
    const config = deps.config();
    const connection = config.connections.find((c) => c.name === body.connection);
    if (connection === undefined) {
      throw new SluiceError('ERR_CONNECTION_UNKNOWN', { message: `No connection is named "${body.connection}"`, details: { connection: body.connection } });
    }
    if (!inAnyGroup(principal, connection.allow_groups)) {
      throw new SluiceError('ERR_CONNECTION_FORBIDDEN', { message: `You are not allowed to use connection "${connection.name}"`, details: { connection: connection.name } });
    }
    if (!connection.requires_grant) {
      throw new SluiceError('ERR_BAD_REQUEST', { message: `Connection "${connection.name}" needs no grant: connect to it directly`, details: { connection: connection.name } });
    }
    const durationMs = parseDuration(body.duration);
    const maxMs = parseDuration(connection.grant.max_duration);
    if (durationMs > maxMs) {
      throw new SluiceError('ERR_BAD_REQUEST', {
        message: `Grants on "${connection.name}" last at most ${formatDuration(maxMs)}; ask for less than ${body.duration}`,
        details: { connection: connection.name, max_duration: connection.grant.max_duration },
      });
    }
    const review = await deps.approvals.requestGrant({
      principal,
      connection: connection.name,
      durationMs,
      reason: body.reason,
      reviewers: grantReviewers(connection, config.roles),
      minApprovals: connection.grant.min_approvals,
      timeoutMs: parseDuration(connection.grant.timeout),
    });
    return reply.code(201).send(reviewJson(review));
  });

  app.get('/v1/grants', async (req) => {
    const principal = await deps.authenticate(req.headers);
    const now = clock();
    const query = listQuery.safeParse(req.query ?? {});
    if (!query.success) throw new SluiceError('ERR_BAD_REQUEST', { message: `Invalid grants query: ${z.prettifyError(query.error).replace(/\n/g, '; ')}` });
    if (query.data.reviewing === 'true') {
      // Per connection, so that many grants on connections the caller does not review cannot crowd theirs out of a page.
      const config = deps.config();
      const reviewed = config.connections.filter((c) => c.requires_grant && inAnyGroup(principal, grantReviewers(c, config.roles)));
      const lists = await Promise.all(reviewed.map((c) => deps.approvals.store.listGrants({ connection: c.name, activeAt: now, limit: 100 })));
      const grants = lists.flat().sort((a, b) => b.createdAt - a.createdAt);
      return { grants: grants.map((g) => grantJson(g, now)), requests: [] };
    }
    const [grants, requests] = await Promise.all([
      deps.approvals.store.listGrants({ sub: principal.sub, limit: 50 }),
      deps.approvals.store.listReviews({ requester: principal.sub, kind: 'grant', limit: 50 }),
    ]);
    return { grants: grants.map((g) => grantJson(g, now)), requests: requests.map(reviewJson) };
  });

  app.post<{ Params: { id: string } }>('/v1/grants/:id/revoke', async (req) => {
    const principal = await deps.authenticate(req.headers);
    const parsed = revokeBody.safeParse(req.body ?? {});
    if (!parsed.success) throw new SluiceError('ERR_BAD_REQUEST', { message: `Invalid revocation: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}` });
    const { id } = req.params;
    const store = deps.approvals.store;
    const grant = await store.getGrant(id);
    if (grant === undefined) throw new SluiceError('ERR_NOT_FOUND', { message: `No grant has the id ${id}`, details: { grant: id } });
    if (grant.sub !== principal.sub && !inAnyGroup(principal, await revokers(grant.connection, grant.reviewId))) {
      throw new SluiceError('ERR_FORBIDDEN', {
        message: `Only the reviewers of grants on "${grant.connection}" and the grant's holder may revoke ${id}`,
        details: { grant: id },
      });
    }
    const now = clock();
    const by = { sub: principal.sub, email: principal.email, groups: principal.groups };
    const revoked = await store.revokeGrant(id, now, { by, reason: parsed.data.reason });
    if (revoked === undefined) {
      throw new SluiceError('ERR_REVIEW_CONFLICT', { message: `Grant ${id} already ended (${new Date(grant.expiresAt).toISOString()})`, details: { grant: id } });
    }
    const review = await store.getReview(revoked.reviewId).catch(() => undefined);
    if (review !== undefined) deps.notify?.({ type: 'grant.revoked', review, grant: revoked, actor: by, reason: parsed.data.reason, at: now });
    return { grant: grantJson(revoked, now) };
  });

  /** Who may revoke a grant on `connection` besides its holder: the connection's grant reviewers, or, once it is gone from the config, those of the access request. */
  async function revokers(connectionName: string, reviewId: string): Promise<readonly string[]> {
    const config = deps.config();
    const connection = config.connections.find((c) => c.name === connectionName);
    if (connection !== undefined) return grantReviewers(connection, config.roles);
    return (await deps.approvals.store.getReview(reviewId))?.reviewers ?? [];
  }
}
