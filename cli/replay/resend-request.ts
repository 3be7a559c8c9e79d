import { SluiceError } from '../../shared/errors.js';
import type { ExchangeDetail, SessionDetail } from '../tui/model.js';

/** Methods whose requests carry no body, so a body that was not recorded does not stop a re-send. */
const BODILESS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);

/**
 * Recorded request headers that are not sent again: the transport's own (recomputed for the new request),
 * the caller's credentials (the re-send carries the current user's token, the gateway injects the
 * upstream's), what the gateway sets itself, and the encoding, so the new answer comes back as text.
 */
const NOT_RESENT = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'authorization',
  'proxy-authorization',
  'cookie',
  'x-api-key',
  'api-key',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-request-id',
  'accept-encoding',
]);

/** Value the recorder writes in place of a credential. */
const REMOVED = '[removed]';

/** What goes through the gateway again, and where. */
export interface ResendPlan {
  /** The connection it goes through: the recorded one, or `--connection`. */
  readonly connection: string;
  readonly method: string;
  /** Path and query relative to the connection's upstream, as recorded. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  /** `<session id>#<exchange number>`: the `x-sluice-resend-of` header, and the new session's `resend_of`. */
  readonly resendOf: string;
  /** The body is the recorded, masked one: placeholders, not the original values. */
  readonly masked: boolean;
}

/** Options of `planResend`. */
export interface PlanResendOptions {
  /** Send through this connection instead of the recorded one. */
  readonly connection?: string;
  /** The user accepted sending a body that was recorded masked. */
  readonly maskedOk: boolean;
}

/** The recorded request body as it goes out again: JSON re-serialised, text as recorded. */
function bodyOf(exchange: ExchangeDetail): string | undefined {
  const body = exchange.request.body;
  if (body.kind === 'json') return JSON.stringify(body.value);
  if (body.kind === 'text') return body.text;
  return undefined;
}

/**
 * Plans the re-send of a recorded exchange, or refuses with ERR_USAGE saying why: tcp exchanges, a request
 * body that was not recorded, and (unless `maskedOk`) a body recorded masked.
 */
export function planResend(session: SessionDetail, exchange: ExchangeDetail, options: PlanResendOptions): ResendPlan {
  const number = exchange.index + 1;
  const where = `${session.summary.id} #${number}`;
  if (session.summary.connectionType === 'tcp') {
    throw new SluiceError('ERR_USAGE', { message: `${where} is a tcp exchange: only http requests can be re-sent` });
  }
  if (exchange.method === '') {
    throw new SluiceError('ERR_USAGE', { message: `${where} has no recorded request (it was refused before it was recorded): there is nothing to re-send` });
  }
  const body = bodyOf(exchange);
  const recorded = exchange.request.recorded;
  if ((recorded === 'none' || body === undefined) && !BODILESS.has(exchange.method)) {
    throw new SluiceError('ERR_USAGE', {
      message: `The request body of ${where} was not recorded (the connection records only its size and digest): it cannot be re-sent`,
    });
  }
  if (recorded === 'masked' && !options.maskedOk) {
    throw new SluiceError('ERR_USAGE', {
      message:
        `The request body of ${where} was recorded masked: re-sending sends the placeholders, not the original values.\n` +
        'Pass --masked-ok to send it anyway.',
    });
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(exchange.request.headers)) {
    if (NOT_RESENT.has(name) || name.startsWith('x-sluice-') || name.startsWith('proxy-') || value === REMOVED) continue;
    headers[name] = value;
  }
  return {
    connection: options.connection ?? session.summary.connection,
    method: exchange.method,
    path: exchange.path.startsWith('/') ? exchange.path : `/${exchange.path}`,
    headers,
    ...(body === undefined || BODILESS.has(exchange.method) ? {} : { body }),
    resendOf: `${session.summary.id}#${number}`,
    masked: recorded === 'masked',
  };
}
