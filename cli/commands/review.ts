import { createParser } from 'eventsource-parser';
import { z } from 'zod';
import { ERRORS, SluiceError, type ErrorCode } from '../../shared/errors.js';
import { approveResultSchema, reviewDetailSchema, reviewListSchema, reviewSchema, reviewWatchEventSchema, type ReviewJson } from '../../shared/reviews-api.js';
import { ApiClient } from '../api-client.js';
import { getAccessToken } from '../auth/access-token.js';
import type { CliContext, RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { printResult } from '../output.js';
import { waitForSignal } from '../signals.js';

const STATUSES = ['pending', 'approved', 'rejected', 'expired', 'abandoned', 'all'] as const;

const listFlags = z.object({
  status: z.enum(STATUSES).default('pending'),
  kind: z.enum(['request', 'grant']).optional(),
  connection: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  json: z.boolean().default(false),
});

const reasonFlags = z.object({ reason: z.string().trim().min(1).max(1000).optional(), json: z.boolean().default(false) });

const reviewId = z.string().regex(/^r_[0-9a-f]{6,64}$/, 'must be a review id such as r_3f9a…');

function flags<T>(schema: z.ZodType<T>, raw: unknown, subject?: string): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw usageError(parsed.error, subject);
  return parsed.data;
}

function idArg(raw: string): string {
  return flags(reviewId, raw, 'ID');
}

async function client(ctx: CliContext): Promise<ApiClient> {
  const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
  return new ApiClient({ gateway: access.gateway, token: access.token });
}

/** `12m`, `3h5m`, `40s`: how far away a time is. */
export function untilText(iso: string, nowMs: number = Date.now()): string {
  const s = Math.round((Date.parse(iso) - nowMs) / 1000);
  const a = Math.abs(s);
  const text = a >= 3600 ? `${Math.floor(a / 3600)}h${Math.floor((a % 3600) / 60)}m` : a >= 60 ? `${Math.floor(a / 60)}m` : `${a}s`;
  return s >= 0 ? `in ${text}` : `${text} ago`;
}

function durationText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${Math.round(ms / 1000)}s`;
}

/** What a review asks for, in a few words. */
export function requestText(r: ReviewJson): string {
  const s = r.summary;
  if (r.kind === 'grant') return `access for ${durationText(s.duration_ms ?? 0)}`;
  return `${s.method ?? '?'} ${s.path ?? '?'}${s.model ? ` model=${s.model}` : ''}${s.size ? ` ${s.size}B` : ''}`;
}

function who(p: { sub: string; email: string | null } | null): string {
  return p === null ? '-' : (p.email ?? p.sub);
}

/** One plain line per review, for `list` and `watch`. */
export function reviewLine(r: ReviewJson, nowMs: number = Date.now()): string {
  const when = r.status === 'pending' ? `expires ${untilText(r.expires_at, nowMs)}` : `${r.status}${r.resolved_by ? ` by ${who(r.resolved_by)}` : ''}`;
  return [r.id, r.connection, who(r.requester), requestText(r), `rule=${r.rule}`, `reviewers=${r.reviewers.join(',')}`, when].join('  ');
}

function table(rows: string[][], header: string[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((v, i) => (i < r.length - 1 ? v.padEnd(widths[i]!) : v)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** Every field of one review, for `show`; then the held request's body, when the gateway gives it. */
export function reviewDetails(r: ReviewJson & { body?: string | null }, nowMs: number = Date.now()): string {
  const lines = [
    `review:      ${r.id} (${r.kind})`,
    `status:      ${r.status}${r.resolved_by ? ` by ${who(r.resolved_by)}` : ''}${r.resolution ? ` — ${r.resolution}` : ''}`,
    `requester:   ${who(r.requester)}`,
    `connection:  ${r.connection}`,
    `request:     ${requestText(r)}`,
    `rule:        ${r.rule}${r.note ? ` — ${r.note}` : ''}`,
    `reason:      ${r.reason ?? '-'}`,
    `reviewers:   ${r.reviewers.join(', ')} (${r.min_approvals} approval${r.min_approvals === 1 ? '' : 's'} needed)`,
    `approvals:   ${r.approvals.length ? r.approvals.map((a) => who(a)).join(', ') : '-'}`,
    `created:     ${r.created_at}`,
    `expires:     ${r.expires_at}${r.status === 'pending' ? ` (${untilText(r.expires_at, nowMs)})` : ''}`,
  ];
  if (r.session_id) lines.push(`session:     ${r.session_id}${r.request_id ? ` request ${r.request_id}` : ''}`);
  // What the reviewer approves: the prompt as the recording keeps it (masked), not only its model and size.
  if (r.kind === 'request') lines.push(r.body ? `body:\n${r.body.replace(/^/gm, '  ')}` : 'body:        not recorded');
  return lines.join('\n');
}

/** `sluice review list|show|approve|reject|watch`. */
export const registerReview: RegisterCommand = (program, ctx) => {
  const review = program
    .command('review')
    .summary('list, inspect, approve and reject held requests and access requests')
    .description(
      'Requests that match a `review` policy are held by the gateway until reviewers approve them; access ' +
        'requests (`sluice access request`) wait the same way. Reviewers in the rule\'s groups decide here. ' +
        'You never review your own requests.',
    );

  review
    .command('list')
    .description('list reviews you can see (default: pending ones)')
    .option('--status <status>', `one of ${STATUSES.join(', ')}`, 'pending')
    .option('--kind <kind>', 'request or grant')
    .option('--connection <name>', 'only this connection')
    .option('--limit <n>', 'at most this many (newest first)', '100')
    .option('--json', 'print JSON', false)
    .action(async (raw: Record<string, unknown>) => {
      const f = flags(listFlags, raw);
      const api = await client(ctx);
      const data = await api.request({ path: '/v1/reviews', query: { status: f.status, kind: f.kind, connection: f.connection, limit: f.limit }, schema: reviewListSchema });
      printResult(ctx.out, f.json, data, () => {
        if (data.reviews.length === 0) return f.status === 'pending' ? 'No reviews are waiting for you.' : 'No reviews match.';
        const now = Date.now();
        return table(
          data.reviews.map((r) => [r.id, r.status, r.connection, who(r.requester), requestText(r), r.rule, r.status === 'pending' ? untilText(r.expires_at, now) : (r.resolved_at ?? '-')]),
          ['ID', 'STATUS', 'CONNECTION', 'REQUESTER', 'REQUEST', 'RULE', 'EXPIRES/DECIDED'],
        );
      });
    });

  review
    .command('show')
    .description('show one review')
    .argument('<id>', 'review id (r_…)')
    .option('--json', 'print JSON', false)
    .action(async (id: string, raw: Record<string, unknown>) => {
      const f = flags(z.object({ json: z.boolean().default(false) }), raw);
      const rid = idArg(id);
      const api = await client(ctx);
      const data = await api.request({ path: `/v1/reviews/${rid}`, schema: reviewDetailSchema });
      printResult(ctx.out, f.json, data, () => reviewDetails(data));
    });

  review
    .command('approve')
    .description('approve a review: the held request is forwarded (or the access grant starts) once enough reviewers approved')
    .argument('<id>', 'review id (r_…)')
    .option('--reason <text>', 'why; recorded with the decision')
    .option('--json', 'print JSON', false)
    .action(async (id: string, raw: Record<string, unknown>) => {
      const f = flags(reasonFlags, raw);
      const rid = idArg(id);
      const api = await client(ctx);
      const data = await api.request({ method: 'POST', path: `/v1/reviews/${rid}/approve`, body: f.reason === undefined ? {} : { reason: f.reason }, schema: approveResultSchema });
      printResult(ctx.out, f.json, data, () => {
        const r = data.review;
        if (r.status !== 'approved') return `Approved ${r.id}: ${r.approvals.length} of ${r.min_approvals} approvals; waiting for ${r.min_approvals - r.approvals.length} more.`;
        if (data.grant) return `Approved ${r.id}: ${who(r.requester)} may use ${r.connection} until ${data.grant.expires_at}.`;
        return `Approved ${r.id}: ${who(r.requester)}'s ${requestText(r)} on ${r.connection} is forwarded.`;
      });
    });

  review
    .command('reject')
    .description('reject a review: the held request fails with 403 and your reason')
    .argument('<id>', 'review id (r_…)')
    .option('--reason <text>', 'why; the requester sees it')
    .option('--json', 'print JSON', false)
    .action(async (id: string, raw: Record<string, unknown>) => {
      const f = flags(reasonFlags, raw);
      const rid = idArg(id);
      const api = await client(ctx);
      const data = await api.request({ method: 'POST', path: `/v1/reviews/${rid}/reject`, body: f.reason === undefined ? {} : { reason: f.reason }, schema: reviewSchema });
      printResult(ctx.out, f.json, data, () => `Rejected ${data.id}${data.resolution ? `: ${data.resolution}` : ''}.`);
    });

  review
    .command('watch')
    .description('print reviews as they come and as they are decided, until Ctrl-C')
    .option('--json', 'one JSON object per line', false)
    .addHelpText('after', '\nEach line: event, review id, connection, requester, request, rule, reviewers, expiry or decision.\nThe watch reconnects by itself when the connection to the gateway drops.')
    .action(async (raw: Record<string, unknown>) => {
      const f = flags(z.object({ json: z.boolean().default(false) }), raw);
      const stop = new AbortController();
      void waitForSignal(['SIGINT', 'SIGTERM']).then(() => stop.abort());
      await watchReviews(ctx, { json: f.json, signal: stop.signal });
    });
};

/** Options of {@link watchReviews}. */
export interface WatchReviewsOptions {
  readonly json: boolean;
  readonly signal: AbortSignal;
  /** Delay before reconnecting after a drop. Default 2 s. */
  readonly retryMs?: number;
}

/** Streams `GET /v1/reviews/watch` and prints one line per event; reconnects on drops, throws on refusals. */
export async function watchReviews(ctx: CliContext, options: WatchReviewsOptions): Promise<void> {
  const retryMs = options.retryMs ?? 2000;
  let announced = false;
  while (!options.signal.aborted) {
    const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
    let res: Response;
    try {
      res = await fetch(`${access.gateway}/v1/reviews/watch`, {
        headers: { authorization: `Bearer ${access.token}`, accept: 'text/event-stream' },
        signal: options.signal,
      });
    } catch (err) {
      if (options.signal.aborted) return;
      if (!announced) throw new SluiceError('ERR_GATEWAY_UNREACHABLE', { message: `The gateway cannot be reached at ${access.gateway}`, cause: err });
      ctx.out.stderr.write(`watch dropped; reconnecting in ${retryMs / 1000} s\n`);
      await sleep(retryMs, options.signal);
      continue;
    }
    if (!res.ok) {
      // Refusals (401, 403) are final: the same request would be refused again.
      throw await refusal(res);
    }
    if (!announced && !options.json) ctx.out.stderr.write(`watching reviews on ${access.gateway} (Ctrl-C to stop)\n`);
    announced = true;
    // The gateway ends a watch when its token expires: the next one goes out at once with a fresh token.
    let tokenExpired = false;
    const parser = createParser({
      onEvent(message) {
        if (message.event === 'error') tokenExpired ||= message.data.includes('"ERR_TOKEN_EXPIRED"');
        if (message.event === undefined || message.event === 'error') return;
        const parsed = reviewWatchEventSchema.safeParse(JSON.parse(message.data));
        if (!parsed.success) return;
        const e = parsed.data;
        if (options.json) ctx.out.stdout.write(`${JSON.stringify({ event: message.event, ...e })}\n`);
        else ctx.out.stdout.write(`${message.event.replace(/^review\./, '').padEnd(9)} ${reviewLine(e.review)}\n`);
      },
    });
    try {
      const decoder = new TextDecoder();
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }));
    } catch {
      // A dropped stream is retried below; Ctrl-C ends the loop.
    }
    if (options.signal.aborted) return;
    if (tokenExpired) continue;
    ctx.out.stderr.write(`watch dropped; reconnecting in ${retryMs / 1000} s\n`);
    await sleep(retryMs, options.signal);
  }
}

async function refusal(res: Response): Promise<SluiceError> {
  const body = (await res.json().catch(() => undefined)) as { error?: { code?: string; message?: string } } | undefined;
  const code = body?.error?.code;
  if (code !== undefined && Object.hasOwn(ERRORS, code)) return new SluiceError(code as ErrorCode, { message: body?.error?.message, details: { status: res.status } });
  return new SluiceError('ERR_GATEWAY_RESPONSE', { message: `The gateway answered the watch with HTTP ${res.status}`, details: { status: res.status } });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}
