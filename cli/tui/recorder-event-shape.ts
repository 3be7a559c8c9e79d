import type { BodyRecorded } from './model.js';
import type { RecordedEvent } from './recorded-event.js';

/**
 * Maps events in the recorder's own shape (`server/recording/event-types.ts`: `{seq, t, type, fields,
 * payload}`, chunk runs with `parts`, `dir: up|down`) to the flat `RecordedEvent`s `fromEvents` reads.
 * Events already flat pass through. `payload` may arrive as a Buffer (in process), as Buffer JSON, or
 * as base64 (over the REST API). This file goes once the API settles on one shape.
 */

interface RecorderEvent {
  readonly seq: number;
  readonly t: number;
  readonly type: string;
  readonly fields: Record<string, unknown>;
  readonly payload?: unknown;
}

function isRecorderEvent(e: unknown): e is RecorderEvent {
  return typeof e === 'object' && e !== null && typeof (e as { fields?: unknown }).fields === 'object';
}

function bytesOf(payload: unknown): Buffer | undefined {
  if (payload === undefined || payload === null) return undefined;
  if (Buffer.isBuffer(payload)) return payload;
  if (typeof payload === 'string') return Buffer.from(payload, 'base64');
  const json = payload as { type?: unknown; data?: unknown };
  if (json.type === 'Buffer' && Array.isArray(json.data)) return Buffer.from(json.data as number[]);
  return undefined;
}

/** A run's bytes split back into its chunks at their own times: `parts` is `[ms after t, bytes]` each. */
function splitRun(t: number, bytes: Buffer, parts: unknown): { t: number; data: Buffer }[] {
  if (!Array.isArray(parts) || parts.length === 0) return [{ t, data: bytes }];
  const out: { t: number; data: Buffer }[] = [];
  let at = 0;
  for (const p of parts as [number, number][]) {
    out.push({ t: t + p[0], data: bytes.subarray(at, at + p[1]) });
    at += p[1];
  }
  return out;
}

const asRecorded = (v: unknown): BodyRecorded => (v === 'raw' || v === 'masked' || v === 'none' ? v : 'masked');

/** Flattens a stream of recorder-shaped (or already flat) events into `RecordedEvent`s. */
export function normalizeEvents(events: readonly unknown[]): RecordedEvent[] {
  const out: RecordedEvent[] = [];
  let requestRecorded: BodyRecorded = 'masked';
  let responseRecorded: BodyRecorded = 'masked';
  const requested = new Set<string>();
  for (const e of events) {
    if (!isRecorderEvent(e)) {
      out.push(e as RecordedEvent);
      continue;
    }
    const f = e.fields;
    const base = { seq: e.seq, t: e.t };
    const exchange = String(f.exchange ?? '');
    const payload = bytesOf(e.payload);
    switch (e.type) {
      case 'session.start': {
        const user = f.user as { sub: string; email?: string };
        const connection = f.connection as { name: string; type?: 'http' | 'tcp' | 'grpc' };
        const record = f.record as { request_body?: unknown; response_body?: unknown } | undefined;
        requestRecorded = asRecorded(record?.request_body);
        responseRecorded = asRecorded(record?.response_body);
        out.push({
          ...base,
          type: 'session.start',
          session: String(f.session),
          started_at: Number(f.started_at),
          user: user.email === undefined ? { sub: user.sub } : { sub: user.sub, email: user.email },
          connection: connection.name,
          ...(connection.type === undefined ? {} : { connection_type: connection.type }),
          ...(typeof f.resend_of === 'string' ? { resend_of: f.resend_of } : {}),
        });
        break;
      }
      case 'exchange.request': {
        requested.add(exchange);
        const decision = f.decision as { action?: string; rule?: string } | undefined;
        if (decision?.action === 'allow' || decision?.action === 'deny' || decision?.action === 'review') {
          out.push({ ...base, type: 'policy.decision', exchange, action: decision.action, ...(decision.rule === undefined ? {} : { policy: decision.rule }) });
        }
        const query = typeof f.query === 'string' && f.query !== '' ? `?${f.query}` : '';
        out.push({
          ...base,
          type: 'exchange.request',
          exchange,
          method: String(f.method),
          path: `${String(f.path)}${query}`,
          headers: (f.headers ?? {}) as Record<string, string | string[]>,
          ...(payload === undefined ? {} : { body: payload.toString('base64'), encoding: 'base64' as const }),
          body_recorded: payload === undefined ? 'none' : requestRecorded,
        });
        break;
      }
      case 'exchange.response':
        out.push({
          ...base,
          type: 'exchange.response',
          exchange,
          status: Number(f.status),
          headers: (f.headers ?? {}) as Record<string, string | string[]>,
          body_recorded: responseRecorded,
        });
        break;
      case 'exchange.chunk':
        // Request bodies that streamed up are not part of the answer.
        if (f.dir !== 'down' || payload === undefined) break;
        for (const c of splitRun(e.t, payload, f.parts)) {
          out.push({ seq: e.seq, t: c.t, type: 'exchange.chunk', exchange, data: c.data.toString('base64'), encoding: 'base64' });
        }
        break;
      case 'tcp.chunk': {
        const direction = f.dir === 'up' ? 'in' : 'out';
        if (payload === undefined) {
          out.push({ ...base, type: 'tcp.chunk', exchange, direction, data: '', bytes: Number(f.bytes ?? 0) });
          break;
        }
        for (const c of splitRun(e.t, payload, f.parts)) {
          out.push({ seq: e.seq, t: c.t, type: 'tcp.chunk', exchange, direction, data: c.data.toString('base64'), encoding: 'base64' });
        }
        break;
      }
      case 'grpc.message':
        out.push({
          ...base,
          type: 'grpc.message',
          exchange,
          direction: f.dir === 'up' ? 'in' : 'out',
          index: Number(f.index ?? 0),
          bytes: Number(f.bytes ?? 0),
          recorded: f.json === undefined && payload === undefined ? 'none' : f.dir === 'up' ? requestRecorded : responseRecorded,
          ...(f.compressed === true ? { compressed: true } : {}),
          ...(f.json === undefined ? {} : { json: f.json }),
          ...(payload === undefined ? {} : { data: payload.toString('base64') }),
        });
        break;
      case 'exchange.end':
        out.push({ ...base, type: 'exchange.end', ...(f as object), exchange } as RecordedEvent);
        break;
      case 'exchange.error': {
        const request = f.request as { method: string; path: string } | undefined;
        if (request !== undefined && !requested.has(exchange)) {
          out.push({ ...base, type: 'exchange.request', exchange, method: request.method, path: request.path, body_recorded: 'none' });
        }
        out.push({ ...base, type: 'exchange.error', exchange, code: String(f.code), message: String(f.message) });
        break;
      }
      case 'policy.decision': {
        const action = f.action;
        if (action === 'allow' || action === 'deny' || action === 'review') {
          out.push({ ...base, type: 'policy.decision', exchange, action, ...(typeof f.rule === 'string' ? { policy: f.rule } : {}) });
        }
        break;
      }
      case 'review.requested':
        out.push({ ...base, type: 'review.created', exchange, review: String(f.review) });
        break;
      case 'review.approved':
      case 'review.rejected':
      case 'review.expired':
        out.push({
          ...base,
          type: e.type === 'review.approved' ? 'review.approved' : 'review.rejected',
          exchange,
          review: String(f.review),
          ...(typeof f.by === 'string' ? { by: f.by } : {}),
        });
        break;
      case 'masking.summary':
        out.push({ ...base, type: 'masking.summary', exchange, entries: (f.findings ?? []) as { entity: string; rule: string; count: number }[] });
        break;
      case 'session.end':
        out.push({ ...base, type: 'session.end', status: f.reason === 'interrupted' ? 'interrupted' : 'closed' });
        break;
      default:
        break;
    }
  }
  return out;
}
