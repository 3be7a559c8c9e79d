import type { SluiceError } from '../../shared/errors.js';
import type { Carrier } from './carrier.js';
import type { Exchange } from './exchange.js';
import type { MaskingFrames } from './masking-frames.js';
import type { MaskingStage } from './masking-stage.js';
import type { Decision } from './policy-stage.js';
import type { ExchangeEnding, RequestRecord } from './recorder.js';
import type { RecordingFrames } from './recording-frames.js';
import type { UpstreamCall } from './upstream.js';

/** An exchange on its way upstream: what stopping it and telling how it ended need. */
export interface Forwarding {
  readonly recorded: RecordingFrames;
  masked: MaskingFrames | null;
  /** Set once the upstream call has started. */
  call: UpstreamCall | null;
}

/** What the pipeline has settled about one exchange so far; read when the exchange is refused or fails. */
export interface ExchangeProgress {
  /** What policy decided; a rule that failed to evaluate counts as its deny. */
  decision?: Decision;
  /** Set once the request's record was attempted, so a refusal after that never writes it twice. */
  requestRecorded: boolean;
  /** Set once the exchange failed or its caller left: nothing after that records or answers it again. */
  settled: boolean;
  /** Set once the exchange is forwarded. */
  forwarding?: Forwarding;
  /** The request body masked for forwarding, once it is (ahead of policy): a refusal keeps it, not the body as sent. */
  maskedRequest?: Buffer;
}

/**
 * The request's record: its body, when it arrived whole, kept as the connection's `record.request_body`
 * says (the recorder keeps bytes, masked bytes or a digest; masking runs only for `masked`, in slices that
 * leave the event loop to other exchanges).
 */
export async function requestRecord(
  exchange: Exchange,
  masking: MaskingStage,
  decision: Decision | undefined,
  body: Buffer | undefined,
  bodyUnread = false,
): Promise<RequestRecord> {
  const masked =
    body !== undefined && exchange.connection.record.request_body === 'masked'
      ? ((await masking.maskRequestBody?.(exchange, body, decision?.mask)) ?? undefined)
      : undefined;
  return {
    ...(decision === undefined ? {} : { decision }),
    ...(body === undefined ? {} : { body }),
    ...(masked === undefined ? {} : { maskedBody: masked }),
    ...(bodyUnread ? { bodyUnread: true } : {}),
  };
}

/**
 * Records a refused or failed exchange as fully as an allowed one, before it is answered: its request
 * (headers, the decision, the body as `record` settings keep it, or its declared size when it never arrived)
 * unless that is on record already, the error, and the end with what the caller gets. Rejects only when
 * the error's record cannot be written; the refusal is answered either way.
 */
export async function recordRefusal(exchange: Exchange, carrier: Carrier, masking: MaskingStage, progress: ExchangeProgress, error: SluiceError): Promise<void> {
  const forwarding = progress.forwarding;
  let requestBytes = forwarding?.call?.requestBytes ?? 0;
  if (!progress.requestRecorded) {
    progress.requestRecorded = true;
    const { body, unread } = carrier.takeArrivedBody();
    requestBytes = body?.length ?? 0;
    // A prompt refused after request masking read it is kept as it would have left, as a forwarded one is.
    const kept = body !== undefined && progress.maskedRequest !== undefined && exchange.connection.record.request_body !== 'raw' ? progress.maskedRequest : body;
    try {
      await exchange.recording.recordRequest(await requestRecord(exchange, masking, progress.decision, kept, unread));
    } catch {
      // The error record below still names the request (method and path), as for any refusal the recording could not take in full.
    }
  }
  // The caller gets the error unless it left or its response is under way; the end says which.
  const answer = carrier.refusal(error, exchange.id);
  const cutOff = forwarding?.recorded.ending(false);
  const end: ExchangeEnding =
    answer === null
      ? { ...(cutOff ?? { durationMs: Date.now() - exchange.startedAt, responseBytes: 0 }), status: carrier.headSent ? (cutOff?.status ?? 0) : 0, complete: false, requestBytes }
      : {
          ...(cutOff ?? { durationMs: Date.now() - exchange.startedAt }),
          status: answer.status,
          complete: true,
          requestBytes,
          // A refusal in trailers follows what the caller already got of the response (gRPC).
          responseBytes: (cutOff?.responseBytes ?? 0) + answer.bytes,
          ...(answer.trailers === undefined ? {} : { trailers: answer.trailers }),
        };
  await exchange.recording.recordError({ code: error.code, message: error.message, afterResponseHead: carrier.headSent, end });
}
