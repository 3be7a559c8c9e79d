/**
 * Stable type codes of recorded events and the fields each carries. An auditor's query depends on these
 * codes and field names, never on free text: add codes and optional fields, never rename or remove them.
 * Every event also carries `seq` (0-based position among the session's events, whatever record holds it)
 * and `t` (milliseconds since the session started).
 */
export const EVENT_TYPES = [
  'session.start',
  'exchange.request',
  'exchange.response',
  'exchange.chunk',
  'exchange.end',
  'exchange.error',
  'policy.decision',
  'review.requested',
  'review.approved',
  'review.rejected',
  'review.expired',
  'masking.summary',
  'tcp.chunk',
  'grpc.message',
  'session.end',
  'session.checkpoint',
] as const;

/** One stable event type code. */
export type EventType = (typeof EVENT_TYPES)[number];

/** Direction of a body or TCP chunk: `up` caller → upstream, `down` upstream → caller. */
export type Direction = 'up' | 'down';

/** How a body was kept: its bytes (`raw`), or only its size and SHA-256 (`digest`). */
export type BodyCapture = 'raw' | 'masked' | 'digest';

/** Size and SHA-256 of a body that was not kept. */
export interface BodyDigest {
  readonly bytes: number;
  readonly sha256: string;
  /** Why the body's bytes are not in the recording (`record.response_body is none`, binary…); absent when they are. */
  readonly not_kept?: string;
}

/** Token usage as OpenAI-style APIs report it. */
export interface Usage {
  readonly prompt_tokens?: number;
  readonly completion_tokens?: number;
  readonly total_tokens?: number;
}

/** Fields of each event type (snake_case, as written in the file). */
export interface EventFields {
  'session.start': {
    session: string;
    started_at: number;
    user: { sub: string; email?: string; groups: string[]; client_id?: string; issuer: string };
    connection: { name: string; type: 'http' | 'tcp' | 'grpc' };
    via: 'tunnel' | 'proxy';
    reason?: string;
    client_address: string;
    cli_version?: string;
    record: { request_body: string; response_body: string; raw: boolean };
    /** `<session id>#<exchange number>` this session re-sends, as the caller's `x-sluice-resend-of` claimed. */
    resend_of?: string;
    /**
     * The seal log (`sl_…`) this session's seal is appended to. Once the session is sealed the signature
     * covers it, so a verifier knows the session must be in that log, and that the log must exist.
     */
    seal_log?: string;
  };
  /**
   * The payload holds the request body when `body.capture` is `raw` (or `masked`: as masking left it) and the
   * body had fully arrived. A refused exchange has one too, written before the refusal is answered.
   */
  'exchange.request': {
    exchange: string;
    method: string;
    /** As the upstream receives it; the target as sent when the exchange was refused for its path. */
    path: string;
    query?: string;
    headers: Record<string, string | string[]>;
    /** `allow`, `deny` or `review`; `none` when the exchange was refused before policy judged it. */
    decision: { action: string; rule?: string };
    /**
     * Absent when there is no body; `streamed` when it follows as chunks (raw) or is summed up in `exchange.end`;
     * `unread` when the exchange was refused before the body arrived (`bytes` is then its declared size, if any).
     */
    body?: { capture: BodyCapture; bytes?: number; sha256?: string; streamed?: boolean; unread?: boolean; not_kept?: string };
  };
  'exchange.response': { exchange: string; status: number; headers: Record<string, string | string[]> };
  /**
   * A run of body chunks of one direction. `parts` gives `[ms after t, bytes]` per chunk when the run holds
   * more than one. The payload holds the bytes when the body is recorded raw; otherwise only sizes and times.
   */
  'exchange.chunk': { exchange: string; dir: Direction; bytes: number; parts?: [number, number][] };
  /**
   * How the exchange ended, refused ones included: `status` is what the caller was answered (the gateway's
   * error status for a refusal; 0 when nothing was), `complete` false when the answer was cut off or never sent.
   */
  'exchange.end': {
    exchange: string;
    status: number;
    complete: boolean;
    duration_ms: number;
    /** Milliseconds from the request to the response head. */
    ttfb_ms?: number;
    /** Milliseconds from the request to the first body byte (time to first token for streams). */
    first_chunk_ms?: number;
    bytes_up: number;
    bytes_down: number;
    request_body?: BodyDigest;
    response_body?: BodyDigest;
    model?: string;
    usage?: Usage;
    finish_reason?: string;
    /** The upstream's trailers (a chunked HTTP response's, a gRPC status), credentials redacted like headers. */
    trailers?: Record<string, string | string[]>;
  };
  'exchange.error': {
    exchange: string;
    code: string;
    message: string;
    after_response_head: boolean;
    /** Present when the exchange was refused before its request was recorded (denied, forbidden). */
    request?: { method: string; path: string };
  };
  'policy.decision': { exchange: string; action: string; rule?: string; reason?: string; reviewers?: string[] };
  'review.requested': { exchange: string; review: string; rule?: string; reviewers?: string[] };
  'review.approved': { exchange: string; review: string; by?: string; note?: string };
  'review.rejected': { exchange: string; review: string; by?: string; note?: string };
  'review.expired': { exchange: string; review: string };
  /** Entity, rule and count per finding; never a value. */
  'masking.summary': { exchange: string; findings: { entity: string; rule: string; count: number }[] };
  /** Like `exchange.chunk`; the payload holds the bytes when the connection's `record.raw` is true. */
  'tcp.chunk': { exchange: string; dir: Direction; bytes: number; parts?: [number, number][] };
  /**
   * One gRPC message, recorded as it passes (its `t` is its timing). `index` counts the messages of its
   * direction from 0. Kept as the body settings of its direction say: with `raw` (or `masked`, once masking
   * applies) the payload holds the message bytes without their 5-byte framing and `json` the message
   * decoded with the connection's descriptors (absent when it could not be, or is `compressed`); otherwise
   * only its size.
   */
  'grpc.message': { exchange: string; dir: Direction; index: number; bytes: number; compressed?: boolean; json?: unknown };
  'session.end': { reason: string; exchanges: number };
  'session.checkpoint': { session: string; records: number; final_hash: string; signature: string; public_key: string };
}

/** One decrypted event as the reader yields it. */
export interface RecordedEvent<T extends EventType = EventType> {
  readonly seq: number;
  /** Milliseconds since the session started. */
  readonly t: number;
  readonly type: T;
  readonly fields: EventFields[T];
  /** Body or TCP bytes, when recorded. */
  readonly payload?: Buffer;
  /** 0-based position of the record holding it; several events may share one (format 3). */
  readonly record: number;
  /** Byte offset of that record in the file. */
  readonly offset: number;
}
