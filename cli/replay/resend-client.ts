import { ERRORS, SluiceError, type ErrorCode } from '../../shared/errors.js';
import type { ResendOutcome } from '../tui/app.js';
import { answerOf } from '../tui/exchange-lines.js';
import { fromEvents } from '../tui/from-events.js';
import type { ExchangeDetail, SessionDetail } from '../tui/model.js';
import { resendDiff, type ResendDiff } from '../tui/word-diff.js';
import type { ResendPlan } from './resend-request.js';

// The gateway's own names (server/api/proxy-route.ts), repeated so the CLI loads no server code.

/** Request header the gateway reads to open the re-send's own session with `resend_of`. */
export const RESEND_OF_HEADER = 'x-sluice-resend-of';

/** Response header naming the recording session of a proxied call. */
export const SESSION_HEADER = 'x-sluice-session';

/** Where and as whom the re-send goes. */
export interface ResendTarget {
  /** Gateway base URL, without a trailing slash. */
  readonly gateway: string;
  /** The current user's bearer token: the re-send goes through policy, review and masking as them. */
  readonly token: string;
}

/** A re-send's outcome plus what the upstream said when its answer is an error. */
export interface ResendResult extends ResendOutcome {
  /** The upstream's error message, when its answer is an error (the gateway's own refusals throw). */
  readonly errorMessage?: string;
}

/** The `error` of an error answer's JSON body, if it has one. */
function errorOf(exchange: ExchangeDetail): { code?: string; message: string } | undefined {
  if (exchange.status < 400 || exchange.response.body.kind !== 'json') return undefined;
  const error = (exchange.response.body.value as { error?: { message?: unknown; code?: unknown } } | null)?.error;
  if (typeof error?.message !== 'string') return undefined;
  return typeof error.code === 'string' ? { code: error.code, message: error.message } : { message: error.message };
}

/**
 * Sends a planned re-send through the gateway's direct proxy route as the current user, reads the answer
 * as it streams (keeping each chunk's arrival time, so it can be played back), and returns it as an
 * exchange of the new session the gateway opened for it.
 */
export async function sendAgain(target: ResendTarget, plan: ResendPlan): Promise<ResendResult> {
  const now = Date.now;
  const url = `${target.gateway}/v1/proxy/${encodeURIComponent(plan.connection)}${plan.path}`;
  const startedAt = now();
  let res: Response;
  try {
    res = await fetch(url, {
      method: plan.method,
      headers: { ...plan.headers, authorization: `Bearer ${target.token}`, [RESEND_OF_HEADER]: plan.resendOf },
      ...(plan.body === undefined ? {} : { body: plan.body }),
      redirect: 'error',
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new SluiceError('ERR_GATEWAY_UNREACHABLE', {
      message: `The gateway cannot be reached at ${target.gateway} (${cause?.code ?? cause?.message ?? (err as Error).message})`,
      cause: err,
    });
  }
  const headAt = now() - startedAt;
  const session = res.headers.get(SESSION_HEADER) ?? '';
  const exchange = res.headers.get('x-request-id') ?? 'resend';
  const chunks: { t: number; data: string }[] = [];
  if (res.body !== null) {
    const decoder = new TextDecoder();
    for await (const bytes of res.body) {
      const data = decoder.decode(bytes, { stream: true });
      if (data !== '') chunks.push({ t: now() - startedAt, data });
    }
    const rest = decoder.decode();
    if (rest !== '') chunks.push({ t: now() - startedAt, data: rest });
  }
  const endAt = now() - startedAt;
  const responseHeaders: Record<string, string> = {};
  res.headers.forEach((value, name) => {
    responseHeaders[name] = value;
  });
  // The answer as this client saw it, in the event shape `fromEvents` reads, so both sides of the diff
  // are read by the same code.
  const detail = fromEvents([
    { seq: 0, t: 0, type: 'session.start', session, started_at: startedAt, user: { sub: '' }, connection: plan.connection, connection_type: 'http', resend_of: plan.resendOf },
    { seq: 1, t: 0, type: 'exchange.request', exchange, method: plan.method, path: plan.path, headers: plan.headers, ...(plan.body === undefined ? {} : { body: plan.body }), body_recorded: 'raw' },
    { seq: 2, t: headAt, type: 'exchange.response', exchange, status: res.status, headers: responseHeaders },
    ...chunks.map((c, i) => ({ seq: 3 + i, t: c.t, type: 'exchange.chunk', exchange, data: c.data })),
    { seq: 3 + chunks.length, t: endAt, type: 'exchange.end', exchange, status: res.status, duration_ms: endAt },
  ]);
  const answered = detail.exchanges[0];
  if (answered === undefined) throw new SluiceError('ERR_INTERNAL', { message: 'The re-send produced no exchange' });
  const error = errorOf(answered);
  // The gateway refused (policy, review, access): that is the outcome, not an answer to compare.
  if (error?.code !== undefined && Object.hasOwn(ERRORS, error.code)) {
    throw new SluiceError(error.code as ErrorCode, { message: `The gateway refused the re-send: ${error.message}`, details: { status: answered.status } });
  }
  const errorMessage = error === undefined ? undefined : error.code === undefined ? error.message : `${error.message} (${error.code})`;
  return { session, exchange: answered, ...(errorMessage === undefined ? {} : { errorMessage }) };
}

/** The `--json` comparison of the recorded answer and the re-sent one. */
export function compareAnswers(session: SessionDetail, old: ExchangeDetail, outcome: ResendOutcome): ResendDiff {
  const side = (id: string, x: ExchangeDetail) => ({ session: id, exchange: x.index, status: x.status, ...(x.model === undefined ? {} : { model: x.model }), text: answerOf(x) });
  return resendDiff(side(session.summary.id, old), side(outcome.session, outcome.exchange));
}
