import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { grantListSchema, grantSchema, reviewSchema, type ReviewJson } from '../../shared/reviews-api.js';
import { ApiClient } from '../api-client.js';
import { getAccessToken } from '../auth/access-token.js';
import type { CliContext, RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { printResult } from '../output.js';
import { untilText } from './review.js';

const requestFlags = z.object({
  for: z.string().regex(/^\d+(s|m|h|d)$/, '--for must be a duration such as 30m, 2h or 1d'),
  reason: z.string().trim().min(1, '--reason is required: reviewers decide on it').max(500, '--reason is limited to 500 characters'),
  wait: z.boolean().default(false),
  json: z.boolean().default(false),
});

const revokeFlags = z.object({
  reason: z.string().trim().min(1, '--reason must not be empty').max(500, '--reason is limited to 500 characters').optional(),
  json: z.boolean().default(false),
});

const listFlags = z.object({ reviewing: z.boolean().default(false), json: z.boolean().default(false) });

/** A grant id as the gateway makes them (`g_` + 24 hex digits): anything else is a typo, caught before it reaches a URL. */
const grantId = z.string().regex(/^g_[0-9a-f]{24}$/, 'GRANT_ID is a grant id such as g_0123456789abcdef01234567 (see `sluice access list`)');

const revokeResultSchema = z.object({ grant: grantSchema });

function flags<T>(schema: z.ZodType<T>, raw: unknown): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw usageError(parsed.error);
  return parsed.data;
}

async function client(ctx: CliContext): Promise<ApiClient> {
  const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
  return new ApiClient({ gateway: access.gateway, token: access.token });
}

/** Polls the access request until a reviewer decides or it expires. */
async function waitForDecision(api: ApiClient, id: string, pollMs: number): Promise<ReviewJson> {
  for (;;) {
    const review = await api.request({ path: `/v1/reviews/${id}`, schema: reviewSchema });
    if (review.status !== 'pending') return review;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** The error `--wait` ends with when the request was not approved. */
function notGranted(review: ReviewJson): SluiceError {
  if (review.status === 'rejected') {
    return new SluiceError('ERR_REVIEW_REJECTED', {
      message: `Access request ${review.id} was rejected by ${review.resolved_by?.email ?? review.resolved_by?.sub ?? 'a reviewer'}${review.resolution ? `: ${review.resolution}` : ''}`,
    });
  }
  if (review.status === 'expired') return new SluiceError('ERR_REVIEW_EXPIRED', { message: `review expired: nobody decided access request ${review.id} in time` });
  return new SluiceError('ERR_REVIEW_ABANDONED', { message: `Access request ${review.id} was withdrawn` });
}

/** `sluice access request NAME --for 2h --reason "…"`, `sluice access list` and `sluice access revoke GRANT_ID`. */
export const registerAccess: RegisterCommand = (program, ctx) => {
  const access = program
    .command('access')
    .summary('request, list and revoke time-boxed access to connections that require a grant')
    .description(
      'Connections with `requires_grant: true` open only for users holding an approved, unexpired grant. ' +
        'Ask for one with `access request`; reviewers approve it with `sluice review approve`. When the grant ' +
        'ends, or is revoked with `access revoke`, tunnels it allowed are closed.',
    );

  access
    .command('request')
    .description('ask reviewers for access to a connection for a while')
    .argument('<name>', 'the connection')
    .requiredOption('--for <duration>', 'how long, e.g. 30m, 2h, 1d (at most the connection\'s grant.max_duration)')
    .requiredOption('--reason <text>', 'why you need it; reviewers see it')
    .option('--wait', 'wait until a reviewer decides; exit 0 when granted, 4 when rejected or expired', false)
    .option('--json', 'print JSON', false)
    .action(async (name: string, raw: Record<string, unknown>) => {
      const f = flags(requestFlags, raw);
      const api = await client(ctx);
      const review = await api.request({ method: 'POST', path: '/v1/grants', body: { connection: name, duration: f.for, reason: f.reason }, schema: reviewSchema });
      if (!f.wait) {
        printResult(ctx.out, f.json, review, () =>
          `Requested access to ${review.connection} for ${f.for}: review ${review.id} (reviewers: ${review.reviewers.join(', ')}).\n` +
          'Run `sluice access list` to see when it is granted.',
        );
        return;
      }
      if (!f.json) ctx.out.stderr.write(`waiting for approval ${review.id} (reviewers: ${review.reviewers.join(', ')})\n`);
      const decided = await waitForDecision(api, review.id, 1000);
      if (decided.status !== 'approved') throw notGranted(decided);
      const { grants } = await api.request({ path: '/v1/grants', schema: grantListSchema });
      const grant = grants.find((g) => g.review_id === decided.id);
      printResult(ctx.out, f.json, { review: decided, grant: grant ?? null }, () =>
        `Granted: you may use ${decided.connection}${grant ? ` until ${grant.expires_at} (${untilText(grant.expires_at)})` : ''}.`,
      );
    });

  access
    .command('list')
    .description('list your grants and access requests (with --reviewing: the grants in force that you review)')
    .option('--reviewing', 'list the grants in force on connections whose grants you review, to find one to revoke', false)
    .option('--json', 'print JSON', false)
    .action(async (raw: Record<string, unknown>) => {
      const f = flags(listFlags, raw);
      const api = await client(ctx);
      const data = await api.request({ path: f.reviewing ? '/v1/grants?reviewing=true' : '/v1/grants', schema: grantListSchema });
      printResult(ctx.out, f.json, data, () => {
        const now = Date.now();
        const granted = new Set(data.grants.map((g) => g.review_id));
        const rows = [
          ...data.grants.map((g) => [
            g.connection,
            g.active ? 'active' : 'ended',
            g.active ? `until ${g.expires_at} (${untilText(g.expires_at, now)})` : `ended ${g.expires_at}`,
            g.id,
            g.review_id,
            ...(f.reviewing ? [g.email ?? g.sub] : []),
            g.reason ?? '',
          ]),
          ...data.requests
            .filter((r) => !granted.has(r.id))
            .map((r) => [r.connection, r.status, r.status === 'pending' ? `review expires ${untilText(r.expires_at, now)}` : (r.resolution ?? '-'), '-', r.id, r.reason ?? '']),
        ];
        if (rows.length === 0) return f.reviewing ? 'No grants are in force on connections whose grants you review.' : 'You hold no grants and have no access requests.';
        const header = ['CONNECTION', 'STATUS', 'WHEN', 'GRANT', 'REVIEW', ...(f.reviewing ? ['HOLDER'] : []), 'REASON'];
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
        const line = (r: string[]) => r.map((v, i) => (i < r.length - 1 ? v.padEnd(widths[i]!) : v)).join('  ').trimEnd();
        return [line(header), ...rows.map(line)].join('\n');
      });
    });

  access
    .command('revoke')
    .description("end a grant now: the holder's tunnels on it close (on every replica) and new ones are refused")
    .argument('<grant_id>', 'the grant, as `sluice access list` shows it (g_…)')
    .option('--reason <text>', 'why; the holder and webhooks see it')
    .option('--json', 'print JSON', false)
    .addHelpText('after', '\nReviewers of the connection\'s grants may revoke any grant on it; a holder may give up their own.')
    .action(async (id: string, raw: Record<string, unknown>) => {
      const f = flags(revokeFlags, raw);
      const checked = grantId.safeParse(id);
      if (!checked.success) throw usageError(checked.error);
      const api = await client(ctx);
      const { grant } = await api.request({
        method: 'POST',
        path: `/v1/grants/${checked.data}/revoke`,
        body: f.reason === undefined ? {} : { reason: f.reason },
        schema: revokeResultSchema,
      });
      printResult(ctx.out, f.json, { grant }, () => `Revoked ${grant.id}: ${grant.email ?? grant.sub} no longer has access to ${grant.connection} (ended ${grant.expires_at}).`);
    });
};
