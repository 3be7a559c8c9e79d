import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { SluiceError, toSluiceError } from '../../shared/errors.js';
import { atTime } from '../../shared/timers.js';
import { parseDuration } from '../config/duration.js';
import type { SealedPreview } from '../approval/review-preview-seal.js';
import type { ApprovalService } from '../approval/approval-service.js';
import type { ReviewEvent } from '../approval/review-feed.js';
import { grantJson, reviewEventJson, reviewJson } from '../approval/review-json.js';
import { isGrantSummary } from '../approval/review.js';
import type { Principal } from '../identity/principal.js';

/** What the reviews routes need. */
export interface ReviewsRouteDeps {
  readonly authenticate: (headers: IncomingHttpHeaders) => Promise<Principal>;
  readonly approvals: ApprovalService;
  /** Opens a held request's sealed preview (review-preview-seal.ts); absent, no body is shown. */
  readonly openPreview?: (preview: SealedPreview | undefined, requester: string) => string | undefined;
  /** Comment lines that keep an idle watch alive through proxies. Default 15 s. */
  readonly watchHeartbeatMs?: number;
  /** A watcher that reads slower than events arrive is cut off past this many buffered bytes. Default 1 MiB. */
  readonly watchMaxBuffer?: number;
}

const listQuery = z.strictObject({
  status: z.enum(['pending', 'approved', 'rejected', 'expired', 'abandoned', 'all']).default('pending'),
  kind: z.enum(['request', 'grant']).optional(),
  connection: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

/** Longest `?wait=` of a review read: proxies commonly cut a silent response after about a minute. */
const MAX_WAIT_MS = 60_000;

const showQuery = z.strictObject({
  /** Long-poll: answer once the review is decided, or after this long with it still pending. */
  wait: z
    .string()
    .regex(/^\d+(ms|s|m)$/, 'must be a duration such as 500ms, 30s or 1m')
    .transform((v) => parseDuration(v))
    .refine((ms) => ms <= MAX_WAIT_MS, `must be at most ${MAX_WAIT_MS / 1000}s`)
    .default(0),
});

const decisionBody = z.strictObject({ reason: z.string().max(1000).optional() }).default({});

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value ?? undefined);
  if (!parsed.success) throw new SluiceError('ERR_BAD_REQUEST', { message: `Invalid ${what}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}` });
  return parsed.data;
}

/**
 * `GET /v1/reviews`, `GET /v1/reviews/:id[?wait=30s]`, `POST /v1/reviews/:id/approve|reject` and `GET /v1/reviews/watch`
 * (server-sent events: `review.pending` for each open review first, then every change as it happens).
 */
export function registerReviewsRoutes(app: FastifyInstance, deps: ReviewsRouteDeps): void {
  const { approvals } = deps;
  const heartbeatMs = deps.watchHeartbeatMs ?? 15_000;
  const maxBuffer = deps.watchMaxBuffer ?? 1024 * 1024;

  app.get('/v1/reviews', async (req) => {
    const principal = await deps.authenticate(req.headers);
    const q = parse(listQuery, req.query, 'query');
    const reviews = await approvals.list(principal, {
      status: q.status === 'all' ? undefined : q.status,
      kind: q.kind,
      connection: q.connection,
      limit: q.limit,
    });
    return { reviews: reviews.map(reviewJson) };
  });

  app.get('/v1/reviews/watch', async (req, reply) => {
    const principal = await deps.authenticate(req.headers);
    // The verifier allows clock leeway; a watch lasts only until the token's own expiry, so a token
    // already past it is refused rather than given a stream that ends at once.
    if (principal.expiresAt * 1000 <= Date.now()) throw new SluiceError('ERR_TOKEN_EXPIRED');
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      'x-request-id': req.id,
    });
    // A watcher that goes away mid-write must not take the gateway with it.
    res.on('error', () => undefined);
    const open = (): boolean => !res.destroyed && !res.writableEnded;
    const send = (type: string, data: unknown): void => {
      if (!open()) return;
      if (res.writableLength > maxBuffer) {
        res.destroy();
        return;
      }
      res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const finish = (type: string, error: SluiceError): void => {
      send(type, error.toJSON());
      if (open()) res.end();
    };
    res.write(': sluice review watch\n\n');
    // Subscribe before reading the open reviews, so nothing created in between is missed.
    const unsubscribe = approvals.store.feed.subscribe((event: ReviewEvent) => {
      if (approvals.canSee(principal, event.review)) send(event.type, reviewEventJson(event));
    });
    const heartbeat = setInterval(() => {
      if (open()) res.write(': keepalive\n\n');
    }, heartbeatMs);
    heartbeat.unref();
    // The watch lasts as long as the token it was opened with: then the watcher reconnects with a fresh one.
    const expiry = atTime(principal.expiresAt * 1000, () =>
      finish('error', new SluiceError('ERR_TOKEN_EXPIRED', { message: 'The token this watch was opened with has expired; reconnect with a fresh one' })),
    );
    res.on('close', () => {
      clearInterval(heartbeat);
      expiry.cancel();
      unsubscribe();
    });
    try {
      const pending = await approvals.list(principal, { status: 'pending', limit: 500 });
      for (const review of pending.reverse()) send('review.pending', reviewEventJson({ type: 'review.created', review, at: review.createdAt }));
    } catch (err) {
      finish('error', toSluiceError(err));
    }
  });

  app.get('/v1/reviews/:id', async (req, reply) => {
    const principal = await deps.authenticate(req.headers);
    const q = parse(showQuery, req.query, 'query');
    // A requester who was answered at once polls here; `wait` ends when the caller goes away.
    const gone = new AbortController();
    const onClose = (): void => gone.abort();
    reply.raw.once('close', onClose);
    try {
      const review = await approvals.awaitDecision(principal, (req.params as { id: string }).id, q.wait, gone.signal);
      // The body only here, for the one review asked for: never in lists, watch events or webhooks.
      const body = isGrantSummary(review.summary) ? undefined : deps.openPreview?.(review.summary.preview, review.requester.sub);
      return { ...reviewJson(review), body: body ?? null };
    } finally {
      reply.raw.off('close', onClose);
    }
  });

  app.post('/v1/reviews/:id/approve', async (req) => {
    const principal = await deps.authenticate(req.headers);
    const body = parse(decisionBody, req.body, 'body');
    const { review, grant } = await approvals.approve({ id: (req.params as { id: string }).id, principal, reason: body.reason });
    return { review: reviewJson(review), grant: grant === undefined ? null : grantJson(grant, Date.now()) };
  });

  app.post('/v1/reviews/:id/reject', async (req) => {
    const principal = await deps.authenticate(req.headers);
    const body = parse(decisionBody, req.body, 'body');
    const review = await approvals.reject({ id: (req.params as { id: string }).id, principal, reason: body.reason });
    return reviewJson(review);
  });
}

