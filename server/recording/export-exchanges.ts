import type { ExchangeSummaryJson } from '../../shared/sessions-api.js';
import type { EventFields, RecordedEvent } from './event-types.js';
import { GrpcCallTracker } from './grpc-call-facts.js';

/** Whether response headers announce a server-sent event stream. */
export function isEventStream(headers: Record<string, string | string[]> | undefined): boolean {
  const type = headers?.['content-type'];
  return (Array.isArray(type) ? type.join(',') : (type ?? '')).toLowerCase().includes('text/event-stream');
}

/**
 * Builds the exchange list of a session from its events, in order of first appearance (the order
 * `sessions show` and the TUI number them, from 1). Holds one small summary per exchange, never a body.
 */
export class ExchangeTracker {
  readonly #byId = new Map<string, ExchangeSummaryJson>();
  readonly #grpc = new GrpcCallTracker();

  /** Takes one event; events without an exchange are ignored. */
  observe(e: RecordedEvent): void {
    const call = this.#grpc.observe(e);
    const id = (e.fields as { exchange?: unknown }).exchange;
    if (typeof id !== 'string' || e.type === 'tcp.chunk') return;
    const x = this.#get(id, e.t);
    // The tracker's record is live: the summary sees later messages and the final status without copying.
    if (call !== undefined) x.grpc = call;
    switch (e.type) {
      case 'exchange.request': {
        const f = e.fields as EventFields['exchange.request'];
        x.method = f.method;
        x.path = f.query === undefined || f.query === '' ? f.path : `${f.path}?${f.query}`;
        x.decision = { action: f.decision.action, ...(f.decision.rule === undefined ? {} : { rule: f.decision.rule }) };
        break;
      }
      case 'exchange.response': {
        const f = e.fields as EventFields['exchange.response'];
        x.status = f.status;
        x.streamed = isEventStream(f.headers);
        break;
      }
      case 'exchange.end': {
        const f = e.fields as EventFields['exchange.end'];
        if (f.status !== 0 || x.status === 0) x.status = f.status;
        x.duration_ms = f.duration_ms;
        x.ttfb_ms = f.ttfb_ms ?? null;
        x.first_chunk_ms = f.first_chunk_ms ?? null;
        x.bytes_up = f.bytes_up;
        x.bytes_down = f.bytes_down;
        x.complete = f.complete;
        x.request_body = f.request_body === undefined ? null : { ...f.request_body };
        x.response_body = f.response_body === undefined ? null : { ...f.response_body };
        x.model = f.model ?? x.model;
        x.usage = f.usage === undefined ? x.usage : { ...f.usage };
        x.finish_reason = f.finish_reason ?? x.finish_reason;
        break;
      }
      case 'exchange.error': {
        const f = e.fields as EventFields['exchange.error'];
        x.error = { code: f.code, message: f.message };
        if (f.request !== undefined && x.method === '') {
          x.method = f.request.method;
          x.path = f.request.path;
        }
        break;
      }
      case 'policy.decision': {
        const f = e.fields as EventFields['policy.decision'];
        x.decision = { action: f.action, ...(f.rule === undefined ? {} : { rule: f.rule }) };
        break;
      }
      default:
        break;
    }
  }

  /** One exchange seen so far. */
  find(id: string): ExchangeSummaryJson | undefined {
    return this.#byId.get(id);
  }

  /** The exchanges so far, numbered from 1. */
  get exchanges(): ExchangeSummaryJson[] {
    return [...this.#byId.values()];
  }

  #get(id: string, t: number): ExchangeSummaryJson {
    let x = this.#byId.get(id);
    if (x === undefined) {
      x = {
        index: this.#byId.size + 1,
        id,
        t,
        method: '',
        path: '',
        status: 0,
        streamed: false,
        model: null,
        usage: null,
        finish_reason: null,
        duration_ms: null,
        ttfb_ms: null,
        first_chunk_ms: null,
        bytes_up: 0,
        bytes_down: 0,
        complete: null,
        request_body: null,
        response_body: null,
        decision: null,
        error: null,
        grpc: null,
      };
      this.#byId.set(id, x);
    }
    return x;
  }
}

/**
 * Resolves `?exchange=` against a session's exchanges: a 1-based position or an exchange id.
 * Undefined picks nothing (callers choose their own default).
 */
export function exchangeSelector(value: string | undefined): ((x: { index: number; id: string }) => boolean) | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    return (x) => x.index === n;
  }
  return (x) => x.id === value;
}
