import type { BodyRecorded, ConnectionType } from './model.js';

/**
 * The recorded events the TUI reads, as `GET /v1/sessions/:id/events` is expected to return them:
 * decrypted, in order, `t` in milliseconds from the session's start. These shapes are the TUI's
 * assumption about the recording format; `from-events.ts` is the one place that reads them, so
 * aligning with the recorder's final shapes touches that file and this one only.
 */

/** Fields every recorded event carries. */
export interface EventBase {
  readonly seq: number;
  /** Milliseconds from the session's start. */
  readonly t: number;
}

/** How a recorded `data`/`body` string is encoded; utf8 when absent. */
export type DataEncoding = 'utf8' | 'base64';

/** Header values as Node reports them. */
export type RecordedHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/** The session opened. */
export interface SessionStartEvent extends EventBase {
  readonly type: 'session.start';
  readonly session: string;
  /** Milliseconds since the epoch. */
  readonly started_at: number;
  readonly user: { readonly sub: string; readonly email?: string };
  readonly connection: string;
  readonly connection_type?: ConnectionType;
  /** The session this one re-sends an exchange of. */
  readonly resend_of?: string;
}

/** A request, as forwarded (after policy and approval); body absent when not recorded. */
export interface ExchangeRequestEvent extends EventBase {
  readonly type: 'exchange.request';
  readonly exchange: string;
  readonly method: string;
  readonly path: string;
  readonly headers?: RecordedHeaders;
  readonly body?: string;
  readonly encoding?: DataEncoding;
  readonly body_recorded?: BodyRecorded;
}

/** The upstream's response head; a body here means it was recorded whole rather than in chunks. */
export interface ExchangeResponseEvent extends EventBase {
  readonly type: 'exchange.response';
  readonly exchange: string;
  readonly status: number;
  readonly headers?: RecordedHeaders;
  readonly body?: string;
  readonly encoding?: DataEncoding;
  readonly body_recorded?: BodyRecorded;
}

/** A piece of the response body at the time the gateway passed it on. */
export interface ExchangeChunkEvent extends EventBase {
  readonly type: 'exchange.chunk';
  readonly exchange: string;
  readonly data: string;
  readonly encoding?: DataEncoding;
}

/** Token usage in either OpenAI or Anthropic naming. */
export interface RecordedUsage {
  readonly prompt_tokens?: number;
  readonly completion_tokens?: number;
  readonly input_tokens?: number;
  readonly output_tokens?: number;
}

/** Size and SHA-256 of a body kept masked or as a digest. */
export interface RecordedDigest {
  readonly bytes: number;
  readonly sha256: string;
  /** Why the body's bytes are not recorded, when they are not. */
  readonly not_kept?: string;
}

/** The exchange ended: answered in full, cut off, or refused (with the gateway's status). */
export interface ExchangeEndEvent extends EventBase {
  readonly type: 'exchange.end';
  readonly exchange: string;
  readonly status: number;
  readonly complete?: boolean;
  readonly bytes_up?: number;
  readonly bytes_down?: number;
  readonly request_body?: RecordedDigest;
  readonly response_body?: RecordedDigest;
  readonly duration_ms?: number;
  readonly ttfb_ms?: number;
  readonly model?: string;
  readonly usage?: RecordedUsage;
  readonly finish_reason?: string;
  /** The upstream's trailers; a gRPC call's status is `grpc-status` and `grpc-message` here. */
  readonly trailers?: RecordedHeaders;
}

/** The exchange was refused or failed. */
export interface ExchangeErrorEvent extends EventBase {
  readonly type: 'exchange.error';
  readonly exchange: string;
  readonly code: string;
  readonly message: string;
}

/** The policy verdict for an exchange. */
export interface PolicyDecisionEvent extends EventBase {
  readonly type: 'policy.decision';
  readonly exchange: string;
  readonly action: 'allow' | 'deny' | 'review';
  readonly policy?: string;
}

/** The exchange was held for a review. */
export interface ReviewCreatedEvent extends EventBase {
  readonly type: 'review.created';
  readonly exchange: string;
  readonly review: string;
}

/** A reviewer resolved the hold. */
export interface ReviewResolvedEvent extends EventBase {
  readonly type: 'review.approved' | 'review.rejected';
  readonly exchange: string;
  readonly review: string;
  readonly by?: string;
}

/** Masking counts of one exchange: one entity/rule per event, or several as `entries`. */
export interface MaskingSummaryEvent extends EventBase {
  readonly type: 'masking.summary';
  readonly exchange: string;
  readonly entity?: string;
  readonly rule?: string;
  readonly count?: number;
  readonly entries?: readonly { readonly entity: string; readonly rule: string; readonly count: number }[];
}

/** Bytes through a tcp connection. */
export interface TcpChunkEvent extends EventBase {
  readonly type: 'tcp.chunk';
  readonly exchange?: string;
  readonly direction: 'in' | 'out';
  /** The bytes; empty when only their size was recorded. */
  readonly data: string;
  readonly encoding?: DataEncoding;
  /** Size when the bytes were not recorded. */
  readonly bytes?: number;
}

/** One message of a gRPC call, at the time it passed. */
export interface GrpcMessageEvent extends EventBase {
  readonly type: 'grpc.message';
  readonly exchange: string;
  /** `in`: caller → upstream; `out`: upstream → caller (as for tcp). */
  readonly direction: 'in' | 'out';
  readonly index: number;
  readonly bytes: number;
  /** How the message was kept, as its direction's body setting says. */
  readonly recorded?: BodyRecorded;
  readonly compressed?: boolean;
  /** The message decoded with the connection's descriptors; absent when it was not recorded or not decodable. */
  readonly json?: unknown;
  /** The message's bytes (base64, without their framing), when recorded. */
  readonly data?: string;
}

/** The session ended. */
export interface SessionEndEvent extends EventBase {
  readonly type: 'session.end';
  readonly status?: 'closed' | 'interrupted';
}

/** Any event the TUI understands; others are skipped so newer recordings still open. */
export type RecordedEvent =
  | SessionStartEvent
  | ExchangeRequestEvent
  | ExchangeResponseEvent
  | ExchangeChunkEvent
  | ExchangeEndEvent
  | ExchangeErrorEvent
  | PolicyDecisionEvent
  | ReviewCreatedEvent
  | ReviewResolvedEvent
  | MaskingSummaryEvent
  | TcpChunkEvent
  | GrpcMessageEvent
  | SessionEndEvent;
