/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): reading a caller's `traceparent`, and the
 * headers the upstream gets in its place when the gateway traces. Pure: no OpenTelemetry code is loaded
 * here, so the data path imports it whether tracing is on or off.
 */

/** A caller's trace context, read from a valid `traceparent` (and its `tracestate`). */
export interface CallerTraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** The caller's span: 16 lower-case hex digits, not all zero. */
  readonly parentSpanId: string;
  /** The trace flags byte (bit 0: sampled). */
  readonly flags: number;
  /** The caller's `tracestate`, as sent; only read alongside a valid `traceparent`. */
  readonly tracestate?: string;
}

/** The trace context the upstream gets in place of the caller's: the gateway's span as the parent. */
export interface ExchangeTrace {
  readonly traceparent: string;
  /** The caller's `tracestate`, passed on unchanged when the trace is the caller's; absent for a trace the gateway started. */
  readonly tracestate?: string;
}

const HEX2 = /^[0-9a-f]{2}$/;
const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const ALL_ZERO = /^0+$/;
/** `tracestate` is at most 32 list members of at most 256 characters each: anything longer is not one. */
const MAX_TRACESTATE = 32 * 257;

/**
 * Reads a `traceparent` header; undefined when it is absent or malformed, which the spec says to treat as
 * absent (never as an error). Two `traceparent` headers are malformed too: which one is meant is unknowable.
 */
export function parseTraceparent(traceparent: string | string[] | undefined, tracestate: string | string[] | undefined): CallerTraceContext | undefined {
  if (typeof traceparent !== 'string') return undefined;
  const value = traceparent.trim();
  const parts = value.split('-');
  if (parts.length < 4) return undefined;
  const [version, traceId, parentSpanId, flags] = parts as [string, string, string, string];
  if (!HEX2.test(version) || version === 'ff') return undefined;
  // Version 00 has exactly four fields; a later version may append more, which this reader skips (spec 3.3.1.5).
  if (version === '00' ? parts.length !== 4 : value.length > 55 && value[55] !== '-') return undefined;
  if (!TRACE_ID.test(traceId) || ALL_ZERO.test(traceId)) return undefined;
  if (!SPAN_ID.test(parentSpanId) || ALL_ZERO.test(parentSpanId)) return undefined;
  if (!HEX2.test(flags)) return undefined;
  const state = tracestateOf(tracestate);
  return { traceId, parentSpanId, flags: parseInt(flags, 16), ...(state === undefined ? {} : { tracestate: state }) };
}

/** A `traceparent` header value (version 00) naming `spanId` as the parent. */
export function formatTraceparent(traceId: string, spanId: string, flags: number): string {
  return `00-${traceId}-${spanId}-${(flags & 0xff).toString(16).padStart(2, '0')}`;
}

/** gRPC metadata (or any header object) with the caller's trace context replaced by the exchange's, when it has one. */
export function withExchangeTrace<T extends Record<string, unknown>>(headers: T, trace: ExchangeTrace | undefined): T {
  if (trace === undefined) return headers;
  const { traceparent: _caller, tracestate: _callerState, ...rest } = headers;
  return { ...rest, traceparent: trace.traceparent, ...(trace.tracestate === undefined ? {} : { tracestate: trace.tracestate }) } as unknown as T;
}

/** Whether a request header is the caller's trace context, which a traced exchange replaces. */
export function isTraceContextHeader(name: string): boolean {
  return name === 'traceparent' || name === 'tracestate';
}

function tracestateOf(value: string | string[] | undefined): string | undefined {
  // Several tracestate headers are one list (spec 3.3.1.1), joined in order.
  const joined = Array.isArray(value) ? value.join(',') : value;
  if (joined === undefined) return undefined;
  const trimmed = joined.trim();
  return trimmed === '' || trimmed.length > MAX_TRACESTATE ? undefined : trimmed;
}
