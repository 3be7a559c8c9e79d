/**
 * JSON shapes of the sessions API (`GET /v1/sessions`, `/v1/sessions/:id`, `/v1/sessions/:id/events`),
 * shared by the gateway (which produces them) and the CLI (which validates what it receives). Times
 * of the index are ISO 8601 strings; `t` of an event is milliseconds since the session started.
 */
import { z } from 'zod';

const SESSION_STATUSES = ['open', 'closed', 'interrupted'] as const;

/** A recorded exchange: `<session id>#<exchange number, from 1>` (what a re-send names). */
export const EXCHANGE_REF = /^ses_[0-9a-f]{32}#[1-9][0-9]{0,5}$/;

/** What `resend_of` filters by: an exchange, or a session (every exchange of it). */
export const resendOfFilter = z
  .string()
  .regex(/^ses_[0-9a-f]{32}(#[1-9][0-9]{0,5})?$/, 'must be a session id, or a session id and an exchange number (ses_…#2)');

/** One row of the session index. */
export const sessionSchema = z.object({
  id: z.string(),
  user: z.object({ sub: z.string(), email: z.string().nullable() }),
  groups: z.array(z.string()),
  client_id: z.string().nullable(),
  connection: z.string(),
  /** From the gateway's current configuration; null when the connection no longer exists. */
  connection_type: z.enum(['http', 'tcp', 'grpc']).nullable(),
  via: z.enum(['tunnel', 'proxy']),
  reason: z.string().nullable(),
  client_address: z.string(),
  cli_version: z.string().nullable(),
  /** The recorded exchange this session re-sends (`<session id>#<exchange number>`); null for others. */
  resend_of: z.string().nullable(),
  started_at: z.string(),
  ended_at: z.string().nullable(),
  status: z.enum(SESSION_STATUSES),
  /** Records in the file, checkpoint included; known once sealed. */
  records: z.number().nullable(),
  final_hash: z.string().nullable(),
  key_id: z.string(),
  /** The session file, relative to `storage.dir` (what `sluice audit verify` reads). */
  file: z.string(),
  models: z.array(z.string()),
  tokens: z.object({ prompt: z.number(), completion: z.number(), total: z.number() }),
  counters: z.object({
    requests: z.number(),
    errors: z.number(),
    bytes_up: z.number(),
    bytes_down: z.number(),
    denied: z.number(),
    held: z.number(),
    masked: z.number(),
  }),
  last_status: z.number(),
});

/** One row of the session index, as JSON. */
export type SessionJson = z.infer<typeof sessionSchema>;

/** `GET /v1/sessions`: newest first; `next` is the cursor of the following page, null on the last. */
export const sessionListSchema = z.object({ sessions: z.array(sessionSchema), next: z.string().nullable() });

/** A page of `GET /v1/sessions`. */
export type SessionListJson = z.infer<typeof sessionListSchema>;

/** What verifying the session file found: `open` is a running session whose records so far are intact. */
export const verifySummarySchema = z.object({
  status: z.enum(['intact', 'interrupted', 'broken', 'open']),
  records: z.number(),
  last_good_seq: z.number(),
  last_good_offset: z.number(),
  problems: z.array(z.object({ kind: z.string(), record: z.number(), offset: z.number(), message: z.string() })),
});

/** The verdict on a session file, as JSON. */
export type VerifySummaryJson = z.infer<typeof verifySummarySchema>;

const bodyDigestSchema = z.object({ bytes: z.number(), sha256: z.string(), not_kept: z.string().optional() });

/** One exchange of a session: what happened, never a body. `index` counts from 1, as `sessions show` numbers them. */
export const exchangeSummarySchema = z.object({
  index: z.number(),
  id: z.string(),
  t: z.number(),
  method: z.string(),
  path: z.string(),
  /** HTTP status the caller was answered, the gateway's own for a refusal; 0 when none came (the caller left, or still running). */
  status: z.number(),
  streamed: z.boolean(),
  model: z.string().nullable(),
  usage: z.object({ prompt_tokens: z.number().optional(), completion_tokens: z.number().optional(), total_tokens: z.number().optional() }).nullable(),
  finish_reason: z.string().nullable(),
  duration_ms: z.number().nullable(),
  ttfb_ms: z.number().nullable(),
  first_chunk_ms: z.number().nullable(),
  bytes_up: z.number(),
  bytes_down: z.number(),
  /** As `exchange.end` records it: false when the answer was cut off or never sent; null with no end on record. */
  complete: z.boolean().nullable().default(null),
  /** Size and SHA-256 of each body as `exchange.end` records them; null when it records none (no body, or kept raw). */
  request_body: bodyDigestSchema.nullable().default(null),
  response_body: bodyDigestSchema.nullable().default(null),
  /** `action` is `allow`, `deny`, `review`, or `none` for an exchange refused before policy judged it. */
  decision: z.object({ action: z.string(), rule: z.string().optional() }).nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  /** A gRPC call's method, its trailers' status (`grpc-status`, `grpc-message`) and message counts; null for other exchanges. */
  grpc: z
    .object({
      service: z.string(),
      method: z.string(),
      status: z.number().nullable(),
      status_name: z.string().nullable(),
      message: z.string().nullable(),
      messages_up: z.number(),
      messages_down: z.number(),
    })
    .nullable()
    .default(null),
});

/** One exchange summary, as JSON. */
export type ExchangeSummaryJson = z.infer<typeof exchangeSummarySchema>;

/**
 * `GET /v1/sessions/:id`: the index row, the verdict on its file and, when the caller may read the
 * session's contents, its exchanges (null otherwise, with `contents: "forbidden"`).
 */
export const sessionDetailSchema = z.object({
  session: sessionSchema,
  verify: verifySummarySchema,
  contents: z.enum(['readable', 'forbidden']),
  exchanges: z.array(exchangeSummarySchema).nullable(),
});

/** `GET /v1/sessions/:id`, as JSON. */
export type SessionDetailJson = z.infer<typeof sessionDetailSchema>;

/** `type` of the line that ends an events stream early: the file cannot be read past this point. */
export const STREAM_ERROR_TYPE = 'stream.error';

/**
 * One line of `GET /v1/sessions/:id/events`: `{seq, t, type, ...fields, payload?}`, the recorded
 * event's fields (`server/recording/event-types.ts`) at the top level and its bytes as base64.
 */
export const eventLineSchema = z.looseObject({ seq: z.number().int().min(0), t: z.number(), type: z.string(), payload: z.string().optional() });

/** One event line, as parsed. */
export type EventLine = z.infer<typeof eventLineSchema>;

/** The last line of an events stream that could not be read to its end. */
export const streamErrorLineSchema = z.object({
  type: z.literal(STREAM_ERROR_TYPE),
  error: z.looseObject({ code: z.string(), message: z.string(), record: z.number().optional(), offset: z.number().optional() }),
});

/** A stream error line, as parsed. */
export type StreamErrorLine = z.infer<typeof streamErrorLineSchema>;

/** An event line in the recorder's own shape, `{seq, t, type, fields, payload}` (payload base64), as `fromEvents` reads it. */
export function eventFromLine(line: EventLine): { seq: number; t: number; type: string; fields: Record<string, unknown>; payload?: string } {
  const { seq, t, type, payload, ...fields } = line;
  return payload === undefined ? { seq, t, type, fields } : { seq, t, type, fields, payload };
}
