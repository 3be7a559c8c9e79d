import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { getAccessToken } from '../auth/access-token.js';
import type { CliContext, RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { printResult } from '../output.js';
import { isInteractive } from '../replay/interactive.js';
import { compareAnswers, sendAgain, type ResendResult } from '../replay/resend-client.js';
import { exchangeJson, resendJson, sessionJson } from '../replay/replay-json.js';
import { planGrpcResend, planResend } from '../replay/resend-request.js';
import { sendGrpcAgain } from '../replay/grpc-resend.js';
import { SessionApi } from '../replay/session-api.js';
import { tuiServices } from '../replay/tui-services.js';
import { answerOf } from '../tui/exchange-lines.js';
import type { ExchangeDetail, SessionDetail } from '../tui/model.js';
import { renderDiff, renderTcpTimeline } from '../tui/plain-render.js';
import { replayToStream, SPEEDS } from '../tui/playback.js';
import type { AnswerSide, ResendDiff } from '../tui/word-diff.js';

const MIN_SPEED: number = SPEEDS[0];
const MAX_SPEED: number = SPEEDS[SPEEDS.length - 1] ?? 16;

const replayFlags = z
  .object({
    exchange: z.coerce.number({ message: '--exchange must be a number' }).int().min(1, { message: '--exchange counts from 1' }).optional(),
    speed: z.coerce
      .number({ message: '--speed must be a number' })
      .min(MIN_SPEED, { message: `--speed must be ${MIN_SPEED} to ${MAX_SPEED}` })
      .max(MAX_SPEED, { message: `--speed must be ${MIN_SPEED} to ${MAX_SPEED}` })
      .default(1),
    json: z.boolean().default(false),
    resend: z.boolean().default(false),
    connection: z.string().min(1).optional(),
    maskedOk: z.boolean().default(false),
  })
  .refine((f) => f.resend || (f.connection === undefined && !f.maskedOk), { message: '--connection and --masked-ok go with --resend' });

type ReplayFlags = z.infer<typeof replayFlags>;

const sessionId = z.string().regex(/^ses_[0-9a-f]{32}$/, 'must be a session id such as ses_3f9a…');

function parse<T>(schema: z.ZodType<T>, raw: unknown, subject?: string): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw usageError(parsed.error, subject);
  return parsed.data;
}

/** The exchange `--exchange N` names (from 1, as the TUI numbers them). */
function pickExchange(detail: SessionDetail, n: number): ExchangeDetail {
  const x = detail.exchanges[n - 1];
  if (x === undefined) {
    const count = detail.exchanges.length;
    throw new SluiceError('ERR_USAGE', {
      message: `${detail.summary.id} has ${count === 0 ? 'no exchanges' : count === 1 ? 'one exchange (#1)' : `${count} exchanges (#1 to #${count})`}; --exchange ${n} names none`,
    });
  }
  return x;
}

/** The exchange a re-send is about: `--exchange N`, or the only one. */
function resendTarget(detail: SessionDetail, n: number | undefined): ExchangeDetail {
  if (n !== undefined) return pickExchange(detail, n);
  const [only, ...more] = detail.exchanges;
  if (only === undefined || more.length > 0) {
    throw new SluiceError('ERR_USAGE', { message: `--resend needs --exchange N: ${detail.summary.id} has ${detail.exchanges.length} exchanges` });
  }
  return only;
}

/** Plays answers (or a tcp timeline) to stdout at the recorded pace, scaled by `speed`. */
async function playPlain(ctx: CliContext, detail: SessionDetail, exchanges: readonly ExchangeDetail[], speed: number): Promise<void> {
  const out = ctx.out.stdout;
  if (detail.summary.connectionType === 'tcp') {
    const lines = detail.timeline.map((e) => ({ t: e.t, text: `${renderTcpTimeline([e])}\n` }));
    await replayToStream(lines, out, { speed });
    return;
  }
  for (const x of exchanges) {
    await replayToStream(x.chunks, out, { speed, ...(x.latencyMs === undefined ? {} : { duration: x.latencyMs }) });
    const text = answerOf(x);
    // Each answer ends its own line, so several read apart and a shell prompt starts fresh.
    if (text !== '' && !text.endsWith('\n')) out.write('\n');
  }
}

function sideLine(name: string, side: AnswerSide): string {
  return `${name}: ${side.session} #${side.exchange + 1} · status ${side.status}${side.model === undefined ? '' : ` · ${side.model}`}`;
}

/** A re-send's comparison as plain lines: both sides, then the word diff marked [-old-]{+new+}. */
export function renderResendPlain(diff: ResendDiff, notes: readonly string[] = []): string {
  const changed = diff.diff.some((p) => p.op !== 'equal');
  return [sideLine('old', diff.old), sideLine('new', diff.new), ...notes.map((n) => `note: ${n}`), '', changed ? renderDiff(diff.diff) : `answers are identical:\n${diff.new.text}`].join('\n');
}

async function resend(ctx: CliContext, api: SessionApi, detail: SessionDetail, f: ReplayFlags): Promise<void> {
  const exchange = resendTarget(detail, f.exchange);
  const options = { maskedOk: f.maskedOk, ...(f.connection === undefined ? {} : { connection: f.connection }) };
  const grpcCall = detail.summary.connectionType === 'grpc';
  const plan = grpcCall ? planGrpcResend(detail, exchange, options) : planResend(detail, exchange, options);
  const notes: string[] = [];
  if (plan.masked) notes.push(grpcCall ? 'sent with the masked request message as recorded' : 'sent with the masked request body as recorded');
  // The JSON goes to stdout alone; saying what is about to happen goes to stderr.
  if (!f.json) ctx.out.stderr.write(`Re-sending ${plan.resendOf} through ${plan.connection} as you…\n`);
  const outcome: ResendResult =
    'message' in plan ? await sendGrpcAgain(ctx, api, plan) : await sendAgain({ gateway: api.gateway, token: api.token }, plan);
  if (outcome.errorMessage !== undefined) notes.push(`the re-send was answered ${outcome.exchange.status}: ${outcome.errorMessage}`);
  const diff = compareAnswers(detail, exchange, outcome);
  if (!f.json && isInteractive(ctx)) {
    const { runDiff } = await import('../replay/tui-runner.js');
    await runDiff(ctx, diff, notes.length === 0 ? undefined : notes.join(' · '));
    return;
  }
  printResult(ctx.out, f.json, resendJson(diff), () => renderResendPlain(diff, notes));
}

/** `sluice replay SESSION [--exchange N] [--speed X] [--json] [--resend [--connection NAME] [--masked-ok]]`. */
export const registerReplay: RegisterCommand = (program, ctx) => {
  program
    .command('replay')
    .summary('play a recorded session back, or send one of its requests again')
    .description(
      'On a terminal, opens the session in the TUI (at the exchange, playing, with --exchange). Off a terminal, ' +
        'writes the answers to stdout at their recorded pace (a tcp session: its input/output timeline), scaled by ' +
        '--speed. With --resend, the recorded request goes through the gateway again as you (policies, reviews and ' +
        'masking apply; the new session records which exchange it re-sends) and the old and new answers are compared ' +
        'word by word.',
    )
    .argument('<session>', 'session id (ses_…)')
    .option('--exchange <n>', 'the exchange, numbered from 1 as the TUI shows it')
    .option('--speed <x>', `playback speed, ${MIN_SPEED} to ${MAX_SPEED}`, '1')
    .option('--json', 'print the exchange (or session) data, snake_case keys, exchanges numbered from 1; with --resend, {old, new, diff}', false)
    .option('--resend', 'send the recorded request through the gateway again and compare the answers', false)
    .option('--connection <name>', 'with --resend: send it through this connection instead of the recorded one')
    .option('--masked-ok', 'with --resend: send a request body that was recorded masked (its placeholders, not the original values)', false)
    .action(async (id: string, raw: Record<string, unknown>) => {
      const f = parse(replayFlags, raw);
      const sid = parse(sessionId, id, 'SESSION');
      const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
      const api = new SessionApi(access);
      const detail = await api.load(sid);
      const exchange = f.exchange === undefined ? undefined : pickExchange(detail, f.exchange);

      if (f.resend) return resend(ctx, api, detail, f);
      if (f.json) {
        const data = exchange === undefined ? sessionJson(detail) : exchangeJson(exchange);
        printResult(ctx.out, true, data, () => '');
        return;
      }
      if (isInteractive(ctx)) {
        // Loaded on demand: Ink and React are needed only on a terminal.
        const { runApp } = await import('../replay/tui-runner.js');
        await runApp(ctx, {
          sessions: [detail.summary],
          ...tuiServices(api, [detail]),
          start: { session: detail.summary.id, ...(exchange === undefined ? {} : { exchange: exchange.index, play: true }) },
          speed: f.speed,
        });
        return;
      }
      await playPlain(ctx, detail, exchange === undefined ? detail.exchanges : [exchange], f.speed);
    });
};
