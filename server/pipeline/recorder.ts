import type { IncomingHttpHeaders } from 'node:http';
import type { ErrorCode } from '../../shared/errors.js';
import type { Exchange } from './exchange.js';
import type { Decision } from './policy-stage.js';

/**
 * Emitted after policy and approval, before a single byte goes upstream; and for a refused exchange, before
 * it is answered, so a refusal is recorded like any other request.
 */
export interface ExchangeRequestEvent {
  readonly type: 'exchange.request';
  readonly exchange: Exchange;
  /** What policy decided; absent when the exchange was refused before policy judged it. */
  readonly decision?: Decision;
  /** The whole request body, when it had fully arrived before forwarding; otherwise it streams through `BodyTap.up`. */
  readonly body?: Buffer;
  /** That body as the masking profiles leave it, when the connection records request bodies `masked`. */
  readonly maskedBody?: Buffer;
  /** The exchange was refused before its body arrived: the body is never read, and only its declared size is known. */
  readonly bodyUnread?: boolean;
}

/** Emitted when the upstream's response head arrives, before the caller gets it. */
export interface ExchangeResponseEvent {
  readonly type: 'exchange.response';
  readonly exchange: Exchange;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
}

/**
 * Emitted when the response body is complete, before the caller gets the end (`complete: true`), or
 * when the caller went away before that (`complete: false`; nothing then waits for the recorder).
 */
export interface ExchangeEndEvent {
  readonly type: 'exchange.end';
  readonly exchange: Exchange;
  readonly status: number;
  readonly complete: boolean;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly durationMs: number;
}

/** Emitted when the exchange is refused or fails at any stage. */
export interface ExchangeErrorEvent {
  readonly type: 'exchange.error';
  readonly exchange: Exchange;
  readonly code: ErrorCode;
  readonly message: string;
  /** Whether the caller had already received the response head (the response was then aborted). */
  readonly afterResponseHead: boolean;
  /**
   * How the HTTP exchange ends: what the caller is answered (the error's status, or the upstream's when the
   * response was under way) and the bytes each way. Recorded as the exchange's `exchange.end` right after
   * the error, so a refused or failed exchange tells its status like any other.
   */
  readonly end?: ExchangeEnding;
}

/** The facts of an `exchange.end`, as carried by an error that ends the exchange. */
export type ExchangeEnding = Omit<ExchangeEndEvent, 'type' | 'exchange'>;

/** Emitted for a decision that refuses the exchange, before it is refused (allow and review decisions ride on `exchange.request`). */
export interface PolicyDecisionEvent {
  readonly type: 'policy.decision';
  readonly exchange: Exchange;
  readonly decision: Decision;
}

/** Emitted by the approval stage as a held exchange's review progresses. */
export interface ReviewEvent {
  readonly type: 'review.requested' | 'review.approved' | 'review.rejected' | 'review.expired';
  readonly exchange: Exchange;
  readonly reviewId: string;
  readonly by?: string;
  readonly note?: string;
}

/** Emitted by the masking stage when a body is done: what was masked, never the values. */
export interface MaskingSummaryEvent {
  readonly type: 'masking.summary';
  readonly exchange: Exchange;
  readonly findings: readonly { readonly entity: string; readonly rule: string; readonly count: number }[];
}

/** Stable code of an event the pipeline emits (a subset of the recording's event types). */
export type RecordEventType = RecordEvent['type'];

/** One recorded event of an exchange. */
export type RecordEvent =
  | ExchangeRequestEvent
  | ExchangeResponseEvent
  | ExchangeEndEvent
  | ExchangeErrorEvent
  | PolicyDecisionEvent
  | ReviewEvent
  | MaskingSummaryEvent;

/**
 * Receives an exchange's body bytes as they flow, on the hot path: it must return at once. A chunk that
 * cannot be recorded fails the exchange at its awaited `exchange.end` (HTTP) or through `onFailure` (TCP).
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
 * Recorder stage. The pipeline awaits `emit` for `exchange.request` before forwarding and for
 * `exchange.end` before ending the caller's response, so a durable recorder that rejects stops the exchange.
 */
export interface Recorder {
  emit(event: RecordEvent): Promise<void>;
  /**
   * The body tap of one exchange, asked once after `exchange.request` was recorded; absent or null means
   * no bytes are wanted, and the data path then pays nothing per chunk. `onFailure` is called (once) when
   * a tapped chunk cannot be recorded, so a stream with no awaited end (TCP) can be cut at once.
   */
  tap?(exchange: Exchange, onFailure?: (error: Error) => void): BodyTap | null;
}

const DONE = Promise.resolve();

/** A recorder that keeps nothing; the default until a durable recorder is configured. */
export const discardRecorder: Recorder = Object.freeze({
  emit: () => DONE,
});
