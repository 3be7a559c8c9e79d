import type { IncomingHttpHeaders } from 'node:http';
import type { ErrorCode } from '../../shared/errors.js';
import type { ExchangeFacts } from './exchange.js';
import type { Decision } from './policy-stage.js';
import type { AnswerFacts } from '../recording/usage-sniffer.js';

/**
 * What the recorder must know about a connection type, so it never branches on the type's name. `message`
 * bodies are HTTP message bodies (kept per `record.request_body` / `response_body`, digested, a declared one
 * noted; the target is a path and a query); `stream` bytes are opaque (kept raw or as sizes per `record.raw`).
 */
export interface RecordingFacts {
  readonly body: 'message' | 'stream' | 'messages';
  /** The record type of body chunks. */
  readonly chunkRecord: 'exchange.chunk' | 'tcp.chunk' | 'grpc.message';
  /**
   * For `messages` bodies (gRPC), where each chunk is one whole message, kept per `record.request_body` /
   * `response_body` like a message body: how a message reads for its record (its JSON where the descriptors define it).
   */
  readonly decodeMessage?: (dir: 'up' | 'down', frame: Buffer, withJson: boolean) => DecodedMessage;
}

/** One message of a `messages` body as its record keeps it. */
export interface DecodedMessage {
  /** The message bytes without their framing (compressed when `compressed`). */
  readonly payload: Buffer;
  readonly compressed: boolean;
  /** The message as JSON, with the .proto's field names; absent when it could not be decoded. */
  readonly json?: unknown;
}

/** The request as recorded before a byte is forwarded, or before a refusal is answered. */
export interface RequestRecord {
  /** What policy decided; absent when the exchange was refused before policy judged it. */
  readonly decision?: Decision;
  /** The whole request body, when it had fully arrived; otherwise it streams through `BodyTap.upRecorded`. */
  readonly body?: Buffer;
  /** That body as the masking profiles leave it, when the connection records request bodies `masked`. */
  readonly maskedBody?: Buffer;
  /** The exchange was refused before its body arrived: the body is never read, and only its declared size is known. */
  readonly bodyUnread?: boolean;
}

/** The response head as recorded: the upstream's status and headers as the caller may see them. */
export interface ResponseHeadRecord {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
}

/** What was masked in one exchange: entity, rule and count, never a value. */
export type MaskingCounts = readonly { readonly entity: string; readonly rule: string; readonly count: number }[];

/**
 * How an exchange ended: `status` is what the caller was answered (the gateway's error status for a refusal,
 * 0 when nothing was), `complete` false when the answer was cut off or never sent.
 */
export interface ExchangeEnding {
  readonly status: number;
  readonly complete: boolean;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly durationMs: number;
  /** What masking replaced in the response, when it replaced anything; recorded just before the end. */
  readonly masking?: MaskingCounts;
  /** The upstream's trailers, as the caller got them. */
  readonly trailers?: IncomingHttpHeaders;
}

/** A refusal or failure at any stage. */
export interface ErrorRecord {
  readonly code: ErrorCode;
  readonly message: string;
  /** Whether the caller had already received the response head (the response was then aborted). */
  readonly afterResponseHead: boolean;
  /** How the exchange ends; recorded as its `exchange.end` right after the error when its request is on record. */
  readonly end?: ExchangeEnding;
}

/** A step of a held exchange's review. */
export interface ReviewRecord {
  readonly type: 'review.requested' | 'review.approved' | 'review.rejected' | 'review.expired';
  readonly reviewId: string;
  readonly by?: string;
  readonly note?: string;
}

/**
 * Receives an exchange's body bytes as they flow, on the hot path: it must return at once. A chunk that
 * cannot be recorded fails the exchange at its awaited end, or at once through the tap's `onFailure`.
 */
export interface BodyTap {
  /**
   * Bytes going caller → upstream (a streamed request body; TCP): resolves once they are recorded (on
   * disk, unless the connection keeps only a digest of request bodies), rejects when they cannot be. The
   * bytes go upstream only then.
   */
  upRecorded(chunk: Buffer): Promise<void>;
  /** Bytes going upstream → caller, as the caller receives them. */
  down(chunk: Buffer): void;
  /** The response passes through the masking stage: `down` now sees masked bytes, which `masked` recording may keep. */
  downMasked?(): void;
}

/**
 * The recording of one exchange, carried by the exchange (`exchange.recording`). Each `record…` call is
 * durable: it resolves once written and rejects when it cannot be, and the pipeline awaits it before the
 * step it guards (forwarding, answering, ending). `recordResponse` and the body tap are queued instead,
 * on the hot path: their writes are awaited by `recordEnd`, which rejects if any of them failed (and the
 * tap's `onFailure` is told at once). `appendBestEffort` is the one write nothing waits for.
 */
export interface ExchangeRecording {
  /** The request, before a byte is forwarded (or before a refusal is answered). */
  recordRequest(request: RequestRecord): Promise<void>;
  /** A decision that refuses the exchange, before it is refused (allow and review ride on the request). */
  recordDecision(decision: Decision): Promise<void>;
  /** A step of the exchange's review. */
  recordReview(review: ReviewRecord): Promise<void>;
  /** The response head, queued ahead of the body; its write is awaited by `recordEnd`. */
  recordResponse(head: ResponseHeadRecord): void;
  /** The end (after what masking replaced), once every queued write of the exchange is on disk. */
  recordEnd(end: ExchangeEnding): Promise<void>;
  /** A refusal or failure, with the end it brings. */
  recordError(error: ErrorRecord): Promise<void>;
  /**
   * Best effort, for what may be lost: the end of an exchange whose caller went away, which nothing waits
   * for and whose failure nobody could be told of. A failure still makes the gateway unready.
   */
  appendBestEffort(end: ExchangeEnding): void;
  /**
   * The body tap, asked once after the request was recorded; null means no bytes are wanted, and the data
   * path then pays nothing per chunk. `onFailure` is called (once) when a queued write fails, so a stream
   * can be cut at once rather than at its end.
   */
  tap(onFailure: (error: Error) => void): BodyTap | null;
  /**
   * What the answer said about itself (model, usage), as the recorder read it on its way through the tap;
   * asked once `recordEnd` resolved. A recording that does not read answers has no such method, and whoever
   * needs the facts reads the answer itself.
   */
  answerFacts?(): AnswerFacts | undefined;
}

/** Where one session's exchanges are recorded; the session (`SessionRef.recorder`) carries it. */
export interface SessionRecorder {
  /** Begins the recording of one exchange of this session; nothing is written until `recordRequest`. */
  begin(exchange: ExchangeFacts, facts: RecordingFacts): ExchangeRecording;
}

/** The gateway's recorder: the recorder of each session, looked up once when the session starts. */
export interface Recorder {
  forSession(session: { readonly id: string }): SessionRecorder;
}

const DONE = Promise.resolve();

const DISCARDING: ExchangeRecording = Object.freeze({
  recordRequest: () => DONE,
  recordDecision: () => DONE,
  recordReview: () => DONE,
  recordResponse: () => undefined,
  recordEnd: () => DONE,
  recordError: () => DONE,
  appendBestEffort: () => undefined,
  tap: () => null,
});

/** A session recorder that keeps nothing: for a gateway without storage (which serves no connections). */
export const discardSessionRecorder: SessionRecorder = Object.freeze({ begin: () => DISCARDING });
