import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import {
  eventLineSchema,
  resendOfFilter,
  sessionDetailSchema,
  sessionListSchema,
  STREAM_ERROR_TYPE,
  streamErrorLineSchema,
  type EventLine,
  type SessionDetailJson,
  type SessionJson,
} from '../../shared/sessions-api.js';
import { ApiClient } from '../api-client.js';
import { ApiStream } from '../api-stream.js';
import { getAccessToken } from '../auth/access-token.js';
import type { CliContext, RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { printResult } from '../output.js';
import { formatCount, formatMs, formatTime, userLabel } from '../tui/display-format.js';
import type { SessionSummary } from '../tui/model.js';
import { SESSION_COLUMNS, sessionCells } from '../tui/session-table.js';

const RELATIVE = /^(\d+)(s|m|h|d)$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `--since`/`--until`: ISO 8601, epoch seconds or milliseconds, or a duration ago (`30m`, `2h`, `7d`). */
export function timeFlag(value: string, nowMs: number = Date.now()): string {
  const rel = RELATIVE.exec(value.trim());
  if (rel !== null) return new Date(nowMs - Number(rel[1]) * UNIT_MS[rel[2] as keyof typeof UNIT_MS]).toISOString();
  if (/^\d+(\.\d+)?$/.test(value.trim()) || !Number.isNaN(Date.parse(value))) return value.trim();
  throw new SluiceError('ERR_USAGE', { message: `"${value}" is not a time: use ISO 8601 (2026-05-01T09:00Z), epoch seconds, or a duration ago (30m, 2h, 7d)` });
}

const listFlags = z.object({
  user: z.string().min(1).optional(),
  connection: z.string().min(1).optional(),
  since: z.string().min(1).optional(),
  until: z.string().min(1).optional(),
  model: z.string().min(1).optional(),
  status: z.enum(['open', 'closed', 'interrupted']).optional(),
  resendOf: resendOfFilter.optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(50),
  cursor: z.string().min(1).optional(),
  json: z.boolean().default(false),
});

/** The flags of `sessions list`, validated. */
export type SessionsListFlags = z.infer<typeof listFlags>;

const sessionId = z.string().regex(/^ses_[0-9a-f]{32}$/, 'must be a session id such as ses_3f9a…');

function flags<T>(schema: z.ZodType<T>, raw: unknown, subject?: string): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw usageError(parsed.error, subject);
  return parsed.data;
}

/** An API client and a streaming client for the profile's gateway. */
export async function sessionClients(ctx: CliContext): Promise<{ api: ApiClient; stream: ApiStream }> {
  const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
  return { api: new ApiClient({ gateway: access.gateway, token: access.token }), stream: new ApiStream({ gateway: access.gateway, token: access.token }) };
}

/** A session of the API as the TUI's list row. */
export function toSessionSummary(s: SessionJson): SessionSummary {
  return {
    id: s.id,
    startedAt: Date.parse(s.started_at),
    user: s.user.email === null ? { sub: s.user.sub } : { sub: s.user.sub, email: s.user.email },
    connection: s.connection,
    connectionType: s.connection_type ?? 'http',
    requests: s.counters.requests,
    models: s.models,
    tokens: { in: s.tokens.prompt, out: s.tokens.completion },
    denied: s.counters.denied,
    held: s.counters.held,
    masked: s.counters.masked,
    status: s.status,
  };
}

/**
 * Fetches up to `limit` sessions matching the flags, following pages (the gateway pages at most 500);
 * `next` is the cursor to continue from, when more exist.
 */
export async function fetchSessions(api: ApiClient, f: Omit<SessionsListFlags, 'json'>, nowMs: number = Date.now()): Promise<{ sessions: SessionJson[]; next: string | null }> {
  const sessions: SessionJson[] = [];
  let cursor = f.cursor;
  for (;;) {
    const page = await api.request({
      path: '/v1/sessions',
      query: {
        user: f.user,
        connection: f.connection,
        since: f.since === undefined ? undefined : timeFlag(f.since, nowMs),
        until: f.until === undefined ? undefined : timeFlag(f.until, nowMs),
        model: f.model,
        status: f.status,
        resend_of: f.resendOf,
        limit: Math.min(500, f.limit - sessions.length),
        cursor,
      },
      schema: sessionListSchema,
    });
    sessions.push(...page.sessions);
    if (page.next === null || sessions.length >= f.limit) return { sessions, next: page.next };
    cursor = page.next;
  }
}

const LIST_COLUMNS = ['ID', ...SESSION_COLUMNS, 'STATUS'] as const;

/** The session list as a plain table (pipes, CI): the TUI's columns between the id and the status. */
export function renderSessionList(sessions: readonly SessionJson[]): string {
  if (sessions.length === 0) return 'No sessions match.';
  const rows = sessions.map((s) => [s.id, ...sessionCells(toSessionSummary(s)), s.status]);
  const widths = LIST_COLUMNS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(LIST_COLUMNS), ...rows.map(line)].join('\n');
}

/** `sluice sessions list` off a TTY: fetch and print the table (or JSON). The TUI calls this when stdout is not a terminal. */
export async function runSessionsList(ctx: CliContext, raw: Record<string, unknown>): Promise<void> {
  const f = flags(listFlags, raw);
  const { api } = await sessionClients(ctx);
  const data = await fetchSessions(api, f);
  printResult(ctx.out, f.json, data, () => (data.next === null ? renderSessionList(data.sessions) : `${renderSessionList(data.sessions)}\n(more: --cursor ${data.next})`));
}

/** `sessions show` in plain text: the index facts, the verdict on the file, the exchanges. */
export function renderSessionDetail(d: SessionDetailJson): string {
  const s = d.session;
  const c = s.counters;
  const v = d.verify;
  const verdict =
    v.status === 'intact'
      ? `intact (${v.records} records, signed, key ${s.key_id})`
      : v.status === 'open'
        ? `open: records 0–${v.last_good_seq} intact so far`
        : v.status === 'interrupted'
          ? `interrupted at record ${v.last_good_seq + 1} byte ${v.last_good_offset}`
          : `broken: ${v.problems.find((p) => p.kind !== 'interrupted' && p.kind !== 'truncated')?.message ?? v.problems[0]?.message ?? 'unknown problem'}`;
  const lines = [
    `session:     ${s.id}`,
    `user:        ${s.user.email === null ? s.user.sub : `${s.user.email} (${s.user.sub})`}${s.client_id ? ` client ${s.client_id}` : ''}`,
    `connection:  ${s.connection} via ${s.via}${s.reason ? ` — ${s.reason}` : ''}`,
    ...(s.resend_of === null ? [] : [`re-sends:    ${s.resend_of}`]),
    `started:     ${formatTime(Date.parse(s.started_at))} UTC${s.ended_at ? `, ended ${formatTime(Date.parse(s.ended_at))} UTC` : ''} (${s.status})`,
    `requests:    ${c.requests} (${c.errors} errors, ${c.denied} denied, ${c.held} held, ${c.masked} masked)`,
    `models:      ${s.models.join(', ') || '–'}`,
    `tokens:      ${formatCount(s.tokens.prompt)} in / ${formatCount(s.tokens.completion)} out (${formatCount(s.tokens.total)} total)`,
    `bytes:       ${c.bytes_up} up / ${c.bytes_down} down`,
    `recording:   ${verdict}`,
  ];
  if (d.exchanges === null) {
    lines.push('exchanges:   not readable to you (auditors and admins read recorded contents)');
  } else if (d.exchanges.length > 0) {
    lines.push('exchanges:');
    for (const x of d.exchanges) {
      const usage = x.usage === null ? '' : `  ${x.usage.prompt_tokens ?? 0}/${x.usage.completion_tokens ?? 0} tokens`;
      const timing = x.duration_ms === null ? '' : `  ${formatMs(x.duration_ms)}${x.streamed && x.first_chunk_ms !== null ? ` (first chunk ${formatMs(x.first_chunk_ms)})` : ''}`;
      const error = x.error === null ? '' : `  ${x.error.code}`;
      // A status alone would read as a whole answer: one cut off or never sent says so.
      const status = `${x.status || '–'}${x.complete === false ? ' incomplete' : ''}`;
      lines.push(`  #${x.index}  ${x.method} ${x.path}  ${status}  ${x.model ?? '–'}${x.streamed ? '  stream' : ''}${usage}${timing}${error}`);
      // A body the recording holds no bytes of says why, so an empty replay is not taken for an empty body.
      if (x.request_body?.not_kept !== undefined) lines.push(`      request body not recorded: ${x.request_body.not_kept}`);
      if (x.response_body?.not_kept !== undefined) lines.push(`      response body not recorded: ${x.response_body.not_kept}`);
    }
  }
  return lines.join('\n');
}

/** A parsed line of an events stream: an event, or the error that ended the stream. */
export type EventsStreamLine = { kind: 'event'; event: EventLine } | { kind: 'error'; code: string; message: string };

/** The events of a session as they stream from the gateway (`GET /v1/sessions/:id/events`). */
export async function* sessionEvents(stream: ApiStream, id: string, options: { fromSeq?: number; payload?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<EventsStreamLine> {
  const query = { from_seq: options.fromSeq, payload: options.payload === false ? 'false' : undefined };
  for await (const raw of stream.ndjson(`/v1/sessions/${encodeURIComponent(id)}/events`, query, options.signal)) {
    if ((raw as { type?: unknown }).type === STREAM_ERROR_TYPE) {
      const e = streamErrorLineSchema.parse(raw).error;
      yield { kind: 'error', code: e.code, message: e.message };
      continue;
    }
    const parsed = eventLineSchema.safeParse(raw);
    if (!parsed.success) throw new SluiceError('ERR_GATEWAY_RESPONSE', { message: `The gateway sent an event line of session ${id} without seq, t or type` });
    yield { kind: 'event', event: parsed.data };
  }
}

/** What one event says, in a few words, for `sessions tail`. */
export function describeEvent(e: EventLine): string {
  const f = e as Record<string, any>;
  switch (e.type) {
    case 'session.start':
      return `user=${f.user?.email ?? f.user?.sub} connection=${f.connection?.name} via=${f.via}`;
    case 'exchange.request':
      return `${f.method} ${f.path}${f.query ? `?${f.query}` : ''}${f.decision?.action && f.decision.action !== 'allow' ? ` (${f.decision.action})` : ''}`;
    case 'exchange.response':
      return String(f.status);
    case 'exchange.chunk':
    case 'tcp.chunk':
      return `${f.dir} ${f.bytes} B`;
    case 'exchange.end':
      return [f.status, f.model, formatMs(f.duration_ms), f.usage?.total_tokens === undefined ? undefined : `${f.usage.total_tokens} tokens`, f.complete === false ? 'incomplete' : undefined]
        .filter((x) => x !== undefined)
        .join(' ');
    case 'exchange.error':
      return `${f.code} ${f.message}`;
    case 'policy.decision':
      return `${f.action}${f.rule ? ` rule=${f.rule}` : ''}`;
    case 'masking.summary':
      return (f.findings ?? []).map((m: { entity: string; count: number }) => `${m.entity}×${m.count}`).join(' ');
    case 'session.end':
      return `${f.reason} (${f.exchanges} exchanges)`;
    case 'session.checkpoint':
      return `sealed: ${f.records} records signed`;
    default:
      return e.type.startsWith('review.') ? `${f.review}${f.by ? ` by ${f.by}` : ''}` : '';
  }
}

/**
 * Numbers a session's exchanges from 1 in order of first appearance, as the gateway's exchange list
 * (`sessions show`, the TUI, `--exchange`) numbers them: by the `exchange` id of each event, tcp chunks
 * aside (they belong to an exchange already seen).
 */
export class ExchangeNumbers {
  readonly #numbers = new Map<string, number>();

  /** The number of the event's exchange; undefined for session-level events. */
  of(e: EventLine): number | undefined {
    const id = (e as { exchange?: unknown }).exchange;
    if (typeof id !== 'string') return undefined;
    let n = this.#numbers.get(id);
    if (n === undefined && e.type !== 'tcp.chunk') this.#numbers.set(id, (n = this.#numbers.size + 1));
    return n;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

const tailFlags = z.object({
  user: z.string().min(1).optional(),
  connection: z.string().min(1).optional(),
  interval: z.string().regex(/^\d+(ms|s)$/, 'must be a duration such as 500ms or 2s').default('1s'),
  json: z.boolean().default(false),
});

/**
 * `sessions tail`: polls the open sessions (and those started since the tail began, so a short one is
 * not missed) and prints each new event once, from the last seq seen. Sessions already running when
 * it starts are followed from their current end. Stops on SIGINT or SIGTERM.
 */
async function tail(ctx: CliContext, raw: Record<string, unknown>): Promise<void> {
  const f = flags(tailFlags, raw);
  const intervalMs = f.interval.endsWith('ms') ? Number(f.interval.slice(0, -2)) : Number(f.interval.slice(0, -1)) * 1000;
  const { api, stream } = await sessionClients(ctx);
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const began = Date.now();
  const next = new Map<string, number>();
  const finished = new Set<string>();
  const numbers = new Map<string, ExchangeNumbers>();
  const write = (s: SessionJson, e: EventLine, exchange: number | undefined): void => {
    if (f.json) ctx.out.stdout.write(`${JSON.stringify({ session_id: s.id, ...(exchange === undefined ? {} : { exchange_index: exchange }), ...e })}\n`);
    else {
      const at = new Date(Date.parse(s.started_at) + e.t).toISOString().slice(11, 23);
      ctx.out.stdout.write(`${at}  ${s.id}  ${userLabel({ sub: s.user.sub, ...(s.user.email === null ? {} : { email: s.user.email }) })}  ${s.connection}  ${exchange === undefined ? '' : `#${exchange} `}${e.type}  ${describeEvent(e)}`.trimEnd() + '\n');
    }
  };
  let first = true;
  try {
    while (!stop.signal.aborted) {
      const filters = { user: f.user, connection: f.connection, limit: 500 };
      const [open, recent] = await Promise.all([
        fetchSessions(api, { ...filters, status: 'open' }),
        fetchSessions(api, { ...filters, since: new Date(began).toISOString() }),
      ]);
      const byId = new Map([...recent.sessions, ...open.sessions].map((s) => [s.id, s]));
      const sessions = [...byId.values()].filter((s) => !finished.has(s.id)).sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
      for (const s of sessions) {
        if (stop.signal.aborted) break;
        const catchUp = first && !next.has(s.id) && Date.parse(s.started_at) < began;
        try {
          for await (const line of sessionEvents(stream, s.id, { fromSeq: next.get(s.id) ?? 0, payload: false, signal: stop.signal })) {
            if (line.kind === 'error') {
              ctx.out.stderr.write(`sluice: ${s.id}: ${line.message} (${line.code})\n`);
              finished.add(s.id);
              break;
            }
            next.set(s.id, line.event.seq + 1);
            // Numbered during a catch-up too, so a session followed from its middle counts as `sessions show` does.
            let numbering = numbers.get(s.id);
            if (numbering === undefined) numbers.set(s.id, (numbering = new ExchangeNumbers()));
            const exchange = numbering.of(line.event);
            if (!catchUp) write(s, line.event, exchange);
          }
        } catch (err) {
          if (stop.signal.aborted) break;
          if (!(err instanceof SluiceError) || (err.code !== 'ERR_FORBIDDEN' && err.code !== 'ERR_RECORDING_TAMPERED')) throw err;
          ctx.out.stderr.write(`sluice: ${s.id}: ${err.message} (${err.code})\n`);
          finished.add(s.id);
        }
        if (s.status !== 'open') finished.add(s.id);
      }
      if (first) ctx.out.stderr.write(`following ${sessions.filter((s) => s.status === 'open').length} open session(s) for new events; Ctrl-C stops\n`);
      first = false;
      await sleep(intervalMs, stop.signal);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const exportFlags = z.object({
  format: z.enum(['har', 'jsonl', 'asciicast']),
  exchange: z.string().regex(/^(\d+|[A-Za-z0-9_-]+)$/, 'must be a 1-based position or an exchange id').optional(),
  output: z.string().min(1).optional(),
});

/** `sluice sessions list|show|export|tail`. */
export const registerSessions: RegisterCommand = (program, ctx) => {
  const sessions = program
    .command('sessions')
    .summary('browse, export and follow recorded sessions')
    .description(
      'Every exchange through the gateway is recorded in an encrypted, signed session file. Auditors and admins ' +
        'see every session; other users list their own (and read their contents where the gateway allows it).',
    )
    // Alone, `sluice sessions` opens the TUI on a terminal and prints the list otherwise. Loaded on demand:
    // Ink and React are needed only for the TUI.
    .action(async () => {
      const { isInteractive, openSessionsTui } = await import('../replay/open-tui.js');
      return isInteractive(ctx) ? openSessionsTui(ctx) : runSessionsList(ctx, {});
    });

  sessions
    .command('list')
    .description('list sessions, newest first')
    .option('--user <sub>', "only this user's sessions (auditors and admins)")
    .option('--connection <name>', 'only this connection')
    .option('--since <time>', 'started at or after: ISO 8601, epoch seconds, or a duration ago (2h, 7d)')
    .option('--until <time>', 'started before (same forms as --since)')
    .option('--model <model>', 'only sessions in which this model answered')
    .option('--status <status>', 'open, closed or interrupted')
    .option('--resend-of <id>', 're-sends of this exchange (ses_…#2), or of any exchange of this session (ses_…)')
    .option('--limit <n>', 'at most this many', '50')
    .option('--cursor <cursor>', 'continue after a previous listing')
    .option('--json', 'print JSON', false)
    .action((raw: Record<string, unknown>) => runSessionsList(ctx, raw));

  sessions
    .command('show')
    .description('one session: who, where, counters, whether its file verifies, and its exchanges')
    .argument('<id>', 'session id (ses_…)')
    .option('--json', 'print JSON', false)
    .action(async (id: string, opts: { json: boolean }) => {
      const sid = flags(sessionId, id, 'ID');
      const { api } = await sessionClients(ctx);
      const data = await api.request({ path: `/v1/sessions/${sid}`, schema: sessionDetailSchema });
      printResult(ctx.out, opts.json, data, () => renderSessionDetail(data));
    });

  sessions
    .command('export')
    .description('export a session: HAR 1.2 (HTTP), asciicast v2 (a streamed answer) or JSONL (one event a line, for SIEMs)')
    .argument('<id>', 'session id (ses_…)')
    .requiredOption('--format <format>', 'har, jsonl or asciicast')
    .option('--exchange <n>', 'asciicast: which exchange (1-based, as `sessions show` numbers them, or its id); default the first streamed one')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action(async (id: string, raw: Record<string, unknown>) => {
      const sid = flags(sessionId, id, 'ID');
      const f = flags(exportFlags, raw);
      const { stream } = await sessionClients(ctx);
      const query = { format: f.format, exchange: f.exchange };
      const path = `/v1/sessions/${sid}/export`;
      if (f.output === undefined) {
        await stream.download(path, query, ctx.out.stdout as NodeJS.WritableStream as never);
        return;
      }
      const headers = await stream.download(path, query, f.output);
      const verdict = headers.get('x-sluice-verify');
      ctx.out.stderr.write(`wrote ${f.output} (${f.format}${verdict ? `, recording ${verdict}` : ''})\n`);
    });

  sessions
    .command('tail')
    .description('follow new events of running sessions as they are recorded (auditors)')
    .option('--user <sub>', "only this user's sessions")
    .option('--connection <name>', 'only this connection')
    .option('--interval <duration>', 'how often to poll (500ms, 2s)', '1s')
    .option('--json', 'print one JSON event a line, with its session_id (and exchange_index, numbered as `sessions show` numbers exchanges)', false)
    .action((raw: Record<string, unknown>) => tail(ctx, raw));
};
