import type { IncomingHttpHeaders } from 'node:http';
import type { ErrorCode } from '../../shared/errors.js';
import type { Exchange } from './exchange.js';
import type { Decision } from './policy-stage.js';

/** Stable event type codes; auditors' queries depend on these, never on free text. */
export const RECORD_EVENT_TYPES = ['exchange.request', 'exchange.response', 'exchange.end', 'exchange.error'] as const;

/** Stable code of one recorded event. */
export type RecordEventType = (typeof RECORD_EVENT_TYPES)[number];

/** Emitted after policy and approval, before a single byte goes upstream. */
export interface ExchangeRequestEvent {
  readonly type: 'exchange.request';
  readonly exchange: Exchange;
  readonly decision: Decision;
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
}

/** One recorded event of an exchange. */
export type RecordEvent = ExchangeRequestEvent | ExchangeResponseEvent | ExchangeEndEvent | ExchangeErrorEvent;

/**
 * Recorder stage. The pipeline awaits `emit` for `exchange.request` before forwarding and for
 * `exchange.end` before ending the caller's response, so a durable recorder that rejects stops the exchange.
 */
export interface Recorder {
  emit(event: RecordEvent): Promise<void>;
}

const DONE = Promise.resolve();

/** A recorder that keeps nothing; the default until a durable recorder is configured. */
export const discardRecorder: Recorder = Object.freeze({
  emit: () => DONE,
});
