import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { grantReviewers } from '../approval/approval-config.js';
import type { ApprovalService } from '../approval/approval-service.js';
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
}

const requestBody = z.strictObject({
  connection: z.string().min(1),
  duration: z.string().regex(/^\d+(s|m|h|d)$/, 'must be a duration such as 30m, 2h or 1d'),
  reason: z.string().trim().min(1, 'is required: reviewers decide on it').max(500),
});

/**
 * `POST /v1/grants` opens an access request (a review of kind `grant`) for a connection with
 * `requires_grant: true`; `GET /v1/grants` lists the caller's grants and access requests.
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
    const [grants, requests] = await Promise.all([
      deps.approvals.store.listGrants({ sub: principal.sub, limit: 50 }),
      deps.approvals.store.listReviews({ requester: principal.sub, kind: 'grant', limit: 50 }),
    ]);
    return { grants: grants.map((g) => grantJson(g, now)), requests: requests.map(reviewJson) };
  });
}
