/**
 * What the gateway sees of tracing, without loading OpenTelemetry: `startTracing` returns null when
 * `telemetry.otlp_endpoint` is unset, and only imports the SDK (otlp-tracing.ts) when it is set.
 */
import type { ExchangeObserver, OutcomeListener } from '../metrics/exchange-observer.js';
import type { TelemetrySettings } from './telemetry-config.js';

/** Traces of exchanges, exported over OTLP/HTTP. */
export interface ExchangeTracing {
  /** Starts each exchange's span before `inner` sees the exchange, which then carries the trace context for the upstream. */
  observe(inner: ExchangeObserver): ExchangeObserver;
  /** Ends each exchange's span, with its stage children, once its outcome is on record. */
  readonly listener: OutcomeListener;
  /** Exports the spans still queued, then stops; called as the gateway closes (after a drain, the exchanges it let finish). */
  shutdown(): Promise<void>;
}

/** Where export problems are told; the app's logger fits. */
export interface TracingLog {
  warn(obj: object, msg: string): void;
}

export interface TracingOptions {
  readonly settings: TelemetrySettings;
  /** `service.version` of the spans' resource. */
  readonly version: string;
  readonly log: TracingLog;
  /** How long spans wait in the batch before export, in ms. Default 5000 (the SDK's). */
  readonly exportDelayMs?: number;
}

/** Starts tracing when an OTLP endpoint is configured; null (and nothing loaded) otherwise. */
export async function startTracing(options: TracingOptions): Promise<ExchangeTracing | null> {
  if (options.settings.otlp_endpoint === undefined) return null;
  const { createOtlpTracing } = await import('./otlp-tracing.js');
  return createOtlpTracing(options, options.settings.otlp_endpoint);
}
