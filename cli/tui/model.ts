/**
 * The view model of recorded sessions: what the TUI views and the plain renderers read. It is built
 * from the gateway's event stream by `fromEvents` (see `from-events.ts`), so the views never depend
 * on the recording format. Times are milliseconds; "offsets" are relative to the start of the
 * exchange (or, for tcp timelines and session-level times, of the session).
 */

/** Lifecycle of a recorded session, as the gateway's index reports it. */
export type SessionStatus = 'open' | 'closed' | 'interrupted';

/** The kind of connection a session went through. */
export type ConnectionType = 'http' | 'tcp' | 'grpc';

/** How much of a body the recording holds: as sent, after masking, or nothing. */
export type BodyRecorded = 'raw' | 'masked' | 'none';

/** Who made the calls of a session. */
export interface SessionUser {
  readonly sub: string;
  readonly email?: string;
}

/** Input and output tokens summed over a session or counted for one exchange. */
export interface TokenCounts {
  readonly in: number;
  readonly out: number;
}

/** One row of the session list. */
export interface SessionSummary {
  readonly id: string;
  /** Milliseconds since the epoch. */
  readonly startedAt: number;
  readonly user: SessionUser;
  readonly connection: string;
  readonly connectionType: ConnectionType;
  readonly requests: number;
  /** Models named by the answers, in order of first use; the list shows the first and a count. */
  readonly models: readonly string[];
  readonly tokens: TokenCounts;
  readonly denied: number;
  readonly held: number;
  readonly masked: number;
  readonly status: SessionStatus;
  /** Set on a session created by re-sending an exchange of another session. */
  readonly resendOf?: string;
}

/** A body as recorded: parsed JSON, text, or absent (not recorded, or empty). */
export type BodyView =
  | { readonly kind: 'json'; readonly value: unknown }
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'none' };

/** Size and SHA-256 of a body, as the recording's `exchange.end` gives them. */
export interface BodyDigestView {
  readonly bytes: number;
  readonly sha256: string;
  /** Why the body's bytes are not recorded, when they are not. */
  readonly notKept?: string;
}

/** One side (request or response) of an exchange. */
export interface MessageView {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: BodyView;
  readonly recorded: BodyRecorded;
  /** Recorded when the body was kept masked or as a digest (not for raw bodies, whose bytes are the record). */
  readonly digest?: BodyDigestView;
}

/** One replacement count of the masking summary; the value itself is never recorded. */
export interface MaskingCount {
  readonly entity: string;
  readonly rule: string;
  readonly count: number;
}

/** A piece of a streamed answer, `t` ms after the exchange started. */
export interface AnswerChunk {
  readonly t: number;
  readonly text: string;
}

/** Why the exchange stood still: a human review, or the upstream's first token. */
export type WaitKind = 'review' | 'first_token';

/** A stretch of an exchange spent waiting, as offsets from its start. */
export interface Wait {
  readonly from: number;
  readonly to: number;
  readonly kind: WaitKind;
}

/** The policy verdict recorded for an exchange. */
export interface DecisionView {
  readonly action: 'allow' | 'deny' | 'review';
  readonly policy?: string;
}

/** The review an exchange was held for, if any. */
export interface ReviewView {
  readonly id: string;
  readonly outcome: 'pending' | 'approved' | 'rejected';
  readonly by?: string;
}

/** One message of a gRPC call. */
export interface GrpcMessageView {
  /** Offset from the exchange's start. */
  readonly t: number;
  /** `in`: caller → upstream; `out`: upstream → caller. */
  readonly direction: 'in' | 'out';
  readonly index: number;
  readonly bytes: number;
  readonly recorded: BodyRecorded;
  readonly compressed?: boolean;
  /** The message decoded; absent when it was not recorded or could not be decoded. */
  readonly json?: unknown;
  /** Its BYTES tensors as text (KServe answers), when it has any. */
  readonly text?: string;
  /** The message's bytes as recorded (base64, without framing): what a re-send sends again. */
  readonly data?: string;
}

/** What a gRPC exchange adds: the method it called, how it ended, and its messages. */
export interface GrpcCallView {
  readonly service: string;
  readonly method: string;
  /** `grpc-status` of the trailers; absent when none was recorded. */
  readonly status?: number;
  readonly statusName?: string;
  /** `grpc-message` of the trailers, percent-decoded. */
  readonly message?: string;
  readonly messages: readonly GrpcMessageView[];
}

/** One recorded request/response, everything the exchange and playback views show. */
export interface ExchangeDetail {
  /** Position in the session, from 0. */
  readonly index: number;
  readonly id: string;
  /** Offset from the session's start. */
  readonly startedAt: number;
  readonly method: string;
  readonly path: string;
  /** HTTP status the caller was answered (the gateway's own for a refusal); 0 when none came (it left, still running). */
  readonly status: number;
  /** False when the answer was cut off or never sent; absent while no end is recorded. */
  readonly complete?: boolean;
  /** Bytes each way, as the recording's end counts them. */
  readonly bytesUp?: number;
  readonly bytesDown?: number;
  readonly latencyMs?: number;
  readonly ttfbMs?: number;
  readonly model?: string;
  readonly usage?: TokenCounts;
  readonly finishReason?: string;
  readonly error?: { readonly code: string; readonly message: string };
  readonly decision?: DecisionView;
  readonly review?: ReviewView;
  readonly request: MessageView;
  readonly response: MessageView;
  readonly masking: readonly MaskingCount[];
  /** True when the answer came as a stream (SSE); `chunks` then hold its pieces. */
  readonly streamed: boolean;
  /** The answer's text at its recorded offsets; a non-streamed answer is one chunk. */
  readonly chunks: readonly AnswerChunk[];
  readonly waits: readonly Wait[];
  /** Present for a call of a `grpc` connection: `streamed` then means the upstream answered more than one message. */
  readonly grpc?: GrpcCallView;
}

/** One read or write of a tcp session, `t` ms after the session started. */
export interface TcpTimelineEntry {
  readonly t: number;
  /** `in`: caller → upstream; `out`: upstream → caller. */
  readonly direction: 'in' | 'out';
  readonly bytes: number;
  /** Printable rendering of the first bytes; control bytes shown as "·". */
  readonly preview: string;
}

/** A session with its exchanges, and for tcp sessions the byte timeline. */
export interface SessionDetail {
  readonly summary: SessionSummary;
  readonly exchanges: readonly ExchangeDetail[];
  readonly timeline: readonly TcpTimelineEntry[];
}

/** How many values were masked in one exchange, request and response together. */
export function maskedTotal(exchange: ExchangeDetail): number {
  return exchange.masking.reduce((n, m) => n + m.count, 0);
}
