import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SluiceError } from '../../shared/errors.js';
import { hasRequestBody } from './bounded-body.js';
import { openAiErrorBody } from './error-response.js';
import type { Exchange } from './exchange.js';
import type { MaskingStage } from './masking-stage.js';
import type { Decision } from './policy-stage.js';
import type { ExchangeEnding, ExchangeRequestEvent, Recorder } from './recorder.js';

/** What the pipeline has settled about one exchange so far; read when the exchange is refused. */
export interface ExchangeProgress {
  /** What policy decided; a rule that failed to evaluate counts as its deny. */
  decision?: Decision;
  /** Set once the request's record was attempted, so a refusal after that never writes it twice. */
  requestRecorded: boolean;
}

/**
 * The `exchange.request` event of an exchange: its body, when it arrived whole, kept as the connection's
 * `record.request_body` says (the recorder keeps bytes, masked bytes or a digest; masking runs only for
 * `masked`, in slices that leave the event loop to other exchanges).
 */
export async function requestEvent(
  exchange: Exchange,
  masking: MaskingStage,
  decision: Decision | undefined,
  body: Buffer | undefined,
  options: { readonly bodyUnread?: boolean } = {},
): Promise<ExchangeRequestEvent> {
  const { connection } = exchange;
  const masked =
    body !== undefined && connection.type === 'http' && connection.record.request_body === 'masked'
      ? ((await masking.maskRequestBody?.(exchange, body, decision?.mask)) ?? undefined)
      : undefined;
  return {
    type: 'exchange.request',
    exchange,
    ...(decision === undefined ? {} : { decision }),
    ...(body === undefined ? {} : { body }),
    ...(masked === undefined ? {} : { maskedBody: masked }),
    ...(options.bodyUnread === true ? { bodyUnread: true } : {}),
  };
}

/**
 * The request body of a refused exchange when it has arrived whole (with the head, or read ahead for policy
 * and put back): taken, so the refusal records it like any other body. A body still on its way, or held back
 * by a caller waiting for 100 Continue, is never waited for; undefined then. Bounded: the parser stops
 * reading the caller's socket once the request's buffer is full, and the read-ahead by `policy_read_ahead`.
 */
export function arrivedBody(req: IncomingMessage): Buffer | undefined {
  if (!hasRequestBody(req) || !req.complete || req.readableEnded) return undefined;
  const chunks: Buffer[] = [];
  let chunk: Buffer | null;
  while ((chunk = req.read() as Buffer | null) !== null) chunks.push(chunk);
  // Let the (now empty) request reach its end, so the connection can carry the next request.
  req.resume();
  return chunks.length === 0 ? undefined : Buffer.concat(chunks);
}

/** What refusing one exchange needs to record it. */
export interface RefusalRecordOptions {
  readonly recorder: Recorder;
  readonly masking: MaskingStage;
  readonly exchange: Exchange;
  readonly req: IncomingMessage;
  /** Not yet answered: the end records what `sendErrorResponse` is about to send. */
  readonly res: ServerResponse;
  readonly progress: ExchangeProgress;
  readonly error: SluiceError;
}

/**
 * Records a refused exchange as fully as an allowed one, before it is answered: its request (headers,
 * the decision, the body as `record` settings keep it, or its declared size when it never arrived) unless
 * that is on record already, the error, and the end with the status the caller gets. Rejects only when
 * the error's record cannot be written; the refusal is answered either way.
 */
export async function recordRefusal(o: RefusalRecordOptions): Promise<void> {
  const { recorder, exchange, req, res, progress, error } = o;
  let requestBytes = 0;
  if (!progress.requestRecorded) {
    progress.requestRecorded = true;
    const body = arrivedBody(req);
    requestBytes = body?.length ?? 0;
    try {
      await recorder.emit(await requestEvent(exchange, o.masking, progress.decision, body, { bodyUnread: body === undefined && hasRequestBody(req) }));
    } catch {
      // The error record below still names the request (method and path), as for any refusal the recording could not take in full.
    }
  }
  // The caller gets the error unless its response is gone (it left) or already under way.
  const answered = !res.headersSent && !res.destroyed;
  const end: ExchangeEnding = {
    status: answered ? error.status : res.headersSent ? res.statusCode : 0,
    complete: answered,
    requestBytes,
    responseBytes: answered ? Buffer.byteLength(openAiErrorBody(error, exchange.id)) : 0,
    durationMs: Date.now() - exchange.startedAt,
  };
  await recorder.emit({ type: 'exchange.error', exchange, code: error.code, message: error.message, afterResponseHead: res.headersSent, end });
}
