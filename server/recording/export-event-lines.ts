import { STREAM_ERROR_TYPE } from '../../shared/sessions-api.js';
import { isSluiceError, type SluiceError } from '../../shared/errors.js';
import type { RecordedEvent } from './event-types.js';
import type { GrpcCallFacts } from './grpc-call-facts.js';

/**
 * One line of `GET /v1/sessions/:id/events`: `{seq, t, type, ...fields, payload?}` with the payload
 * as base64. No recorded field is named seq, t, type or payload, so spreading the fields loses nothing.
 */
export function eventLine(e: RecordedEvent, options: { readonly payload: boolean }): string {
  const line: Record<string, unknown> = { seq: e.seq, t: e.t, type: e.type, ...(e.fields as object) };
  if (options.payload && e.payload !== undefined) line.payload = e.payload.toString('base64');
  return `${JSON.stringify(line)}\n`;
}

/** Who and where a SIEM line is about, from the session index. */
export interface SiemContext {
  readonly session: string;
  /** Milliseconds since the epoch; `t` counts from here. */
  readonly startedAt: number;
  readonly actor: string;
  readonly connection: string;
}

/**
 * One line of the JSONL export for SIEMs: self-contained (absolute `time`, `session_id`, `actor`,
 * `connection_name`), then `seq, t, type` and the recorded fields; never body bytes (sizes and
 * digests stay, in the fields). The envelope names differ from every recorded field name.
 * A line of a gRPC call (`call`, from a GrpcCallTracker) carries `grpc: {service, method}`, and its
 * `exchange.end` also the status the trailers gave (`status`, `status_name`, `message`), so a SIEM
 * query needs neither the path's syntax nor the trailers' encoding. `grpc.message` lines keep their
 * decoded `json`, `bytes` and `t`: each message with its timing and size.
 */
export function siemLine(e: RecordedEvent, ctx: SiemContext, call?: GrpcCallFacts): string {
  const grpc =
    call === undefined
      ? undefined
      : e.type === 'exchange.end'
        ? { service: call.service, method: call.method, status: call.status, status_name: call.status_name, message: call.message }
        : { service: call.service, method: call.method };
  return `${JSON.stringify({
    time: new Date(ctx.startedAt + e.t).toISOString(),
    session_id: ctx.session,
    actor: ctx.actor,
    connection_name: ctx.connection,
    ...(grpc === undefined ? {} : { grpc }),
    seq: e.seq,
    t: e.t,
    type: e.type,
    ...(e.fields as object),
  })}\n`;
}

/** The line that ends a stream whose file cannot be read further: the code, and where reading stopped. */
export function streamErrorLine(err: SluiceError | unknown): string {
  const error = isSluiceError(err) ? err.toJSON().error : { code: 'ERR_INTERNAL', message: 'Internal error' };
  return `${JSON.stringify({ type: STREAM_ERROR_TYPE, error })}\n`;
}
