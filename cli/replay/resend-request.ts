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
  // A gRPC call is no HTTP/1.1 request: it goes again as a gRPC call (planGrpcResend), never through the proxy route.
  if (session.summary.connectionType === 'grpc') {
    throw new SluiceError('ERR_USAGE', { message: `${where} is a gRPC call: it is re-sent with sluice replay --resend, as a gRPC call through a tunnel` });
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

/** gRPC transport metadata the new call sets itself; `-bin` values are recorded without their bytes. */
const GRPC_NOT_RESENT = new Set(['content-type', 'user-agent', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding']);

/** What a gRPC re-send sends again, and through which connection. */
export interface GrpcResendPlan {
  readonly connection: string;
  /** `/package.Service/Method`. */
  readonly path: string;
  /** The recorded request message, without its framing. */
  readonly message: Buffer;
  readonly metadata: Readonly<Record<string, string>>;
  readonly resendOf: string;
  readonly masked: boolean;
}

/**
 * Plans the re-send of a recorded unary gRPC call, or refuses with ERR_USAGE saying why: a streaming call
 * (its messages answered one another, so sending the requests again would not ask the same question), a
 * request message that was not recorded (or only compressed), and (unless `maskedOk`) one recorded masked.
 * A call is taken as streaming when the recording holds more than one message in either direction.
 */
export function planGrpcResend(session: SessionDetail, exchange: ExchangeDetail, options: PlanResendOptions): GrpcResendPlan {
  const number = exchange.index + 1;
  const where = `${session.summary.id} #${number}`;
  const grpc = exchange.grpc;
  if (grpc === undefined) {
    throw new SluiceError('ERR_USAGE', { message: `${where} has no recorded gRPC call (it was refused before it was recorded): there is nothing to re-send` });
  }
  const requests = grpc.messages.filter((m) => m.direction === 'in');
  const answers = grpc.messages.filter((m) => m.direction === 'out');
  if (requests.length > 1 || answers.length > 1) {
    throw new SluiceError('ERR_USAGE', {
      message: `${where} is a streaming gRPC call (${grpc.service}/${grpc.method}: ${requests.length} messages up, ${answers.length} down): only unary calls can be re-sent`,
    });
  }
  const request = requests[0];
  if (request?.data === undefined || request.compressed === true) {
    throw new SluiceError('ERR_USAGE', {
      message: `The request message of ${where} was not recorded${request?.compressed === true ? ' uncompressed' : ''} (the connection records only its size): it cannot be re-sent`,
    });
  }
  if (request.recorded === 'masked' && !options.maskedOk) {
    throw new SluiceError('ERR_USAGE', {
      message: `The request message of ${where} was recorded masked: re-sending sends the placeholders, not the original values.\nPass --masked-ok to send it anyway.`,
    });
  }
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(exchange.request.headers)) {
    if (NOT_RESENT.has(name) || GRPC_NOT_RESENT.has(name) || name.startsWith(':') || name.startsWith('x-sluice-') || name.endsWith('-bin') || value === REMOVED) continue;
    metadata[name] = value;
  }
  return {
    connection: options.connection ?? session.summary.connection,
    path: `/${grpc.service}/${grpc.method}`,
    message: Buffer.from(request.data, 'base64'),
    metadata,
    resendOf: `${session.summary.id}#${number}`,
    masked: request.recorded === 'masked',
  };
}
