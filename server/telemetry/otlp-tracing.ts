/**
 * Exchange spans through the OpenTelemetry SDK, exported over OTLP/HTTP (JSON) by a batch processor.
 * Loaded only when tracing is on (exchange-tracing.ts). The provider is this gateway's own, never
 * registered globally: two gateways in one process trace apart, and no other code's spans land here.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, createTraceState, trace, type Span, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace';
import type { Exchange } from '../pipeline/exchange.js';
import type { ExchangeOutcome } from '../metrics/exchange-observer.js';
import type { ExchangeTracing, TracingLog, TracingOptions } from './exchange-tracing.js';
import { planExchangeSpans } from './span-plan.js';
import { tracesUrl } from './telemetry-config.js';
import { formatTraceparent, parseTraceparent, type CallerTraceContext, type ExchangeTrace } from './trace-context.js';

/** At most one warning this often about spans that could not be exported: a collector down must not flood the log. */
const EXPORT_WARNING_INTERVAL_MS = 60_000;
/** Longest one export may take, the exporter's own default too. */
const EXPORT_TIMEOUT_MS = 10_000;

/** Creates the SDK pipeline for `endpoint` and the tracing the gateway wires into its exchange observer. */
export function createOtlpTracing(options: TracingOptions, endpoint: string): ExchangeTracing {
  const { settings } = options;
  const exporter = warningExporter(new OTLPTraceExporter({ url: tracesUrl(endpoint), timeoutMillis: EXPORT_TIMEOUT_MS }), options.log);
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': settings.service_name, 'service.version': options.version }),
    // A caller that sampled its trace (or did not) decides; traces the gateway starts keep `sample_ratio` of them.
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(settings.sample_ratio) }),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter,
        // A collector that does not answer holds a closing gateway this long at most, not the SDK's 30 s.
        exportTimeoutMillis: EXPORT_TIMEOUT_MS,
        ...(options.exportDelayMs === undefined ? {} : { scheduledDelayMillis: options.exportDelayMs }),
      }),
    ],
  });
  const tracer = provider.getTracer('sluice', options.version);
  // Keyed by the trace context each traced exchange carries: an exchange that never ends leaves nothing behind.
  const open = new WeakMap<ExchangeTrace, Span>();

  const begin = (exchange: Exchange): Exchange => {
    const caller = parseTraceparent(exchange.headers.traceparent, exchange.headers.tracestate);
    const span = startExchangeSpan(tracer, exchange, caller);
    const ctx = span.spanContext();
    const traced: ExchangeTrace = {
      traceparent: formatTraceparent(ctx.traceId, ctx.spanId, ctx.traceFlags),
      // The caller's vendors' state goes on with the caller's trace; the gateway adds no entry of its own.
      ...(caller?.tracestate === undefined || caller.traceId !== ctx.traceId ? {} : { tracestate: caller.tracestate }),
    };
    open.set(traced, span);
    return { ...exchange, trace: traced };
  };

  return {
    observe(inner) {
      return { observe: (exchange) => inner.observe(begin(exchange)) };
    },
    listener(outcome) {
      const traced = outcome.exchange.trace;
      const span = traced === undefined ? undefined : open.get(traced);
      if (traced === undefined || span === undefined) return;
      open.delete(traced);
      try {
        endExchangeSpan(tracer, span, outcome, settings.per_user);
      } catch (err) {
        // A listener never throws into the pipeline; a span that could not be finished is only lost.
        options.log.warn({ err }, 'an exchange span could not be finished');
      }
    },
    async shutdown() {
      // Flushes the batch: spans of the exchanges that ended while draining are exported before the gateway exits.
      await provider.shutdown();
    },
  };
}

/** The exchange's span: a child of the caller's span when its `traceparent` is valid, else the root of a new trace. */
function startExchangeSpan(tracer: Tracer, exchange: Exchange, caller: CallerTraceContext | undefined): Span {
  const parent =
    caller === undefined
      ? ROOT_CONTEXT
      : trace.setSpanContext(ROOT_CONTEXT, {
          traceId: caller.traceId,
          spanId: caller.parentSpanId,
          traceFlags: caller.flags,
          isRemote: true,
          ...(caller.tracestate === undefined ? {} : { traceState: createTraceState(caller.tracestate) }),
        });
  return tracer.startSpan('sluice.exchange', { kind: SpanKind.SERVER, startTime: exchange.startedAt }, parent);
}

/** Ends the exchange span with its attributes and stage children, at the times the recording saw. */
function endExchangeSpan(tracer: Tracer, span: Span, outcome: ExchangeOutcome, perUser: boolean): void {
  if (!span.isRecording()) {
    // Not sampled: nothing is exported, so nothing is worked out.
    span.end();
    return;
  }
  const plan = planExchangeSpans(outcome, { perUser, now: Date.now() });
  span.setAttributes(plan.attributes);
  if (plan.error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: plan.error });
  const parent = trace.setSpan(ROOT_CONTEXT, span);
  for (const stage of plan.stages) {
    const child = tracer.startSpan(stage.name, { kind: stage.kind === 'client' ? SpanKind.CLIENT : SpanKind.INTERNAL, startTime: stage.start, attributes: stage.attributes }, parent);
    for (const event of stage.events ?? []) child.addEvent(event.name, event.time);
    child.end(stage.end);
  }
  span.end(plan.end);
}

/** The exporter, telling the log (at most once a minute) how many batches of spans were lost. */
function warningExporter(inner: SpanExporter, log: TracingLog): SpanExporter {
  let lost = 0;
  let warnedAt = -Infinity;
  return {
    export(spans, done) {
      inner.export(spans, (result) => {
        if (result.code !== 0) {
          lost++;
          const now = Date.now();
          if (now - warnedAt >= EXPORT_WARNING_INTERVAL_MS) {
            warnedAt = now;
            log.warn({ err: result.error, lostBatches: lost }, 'spans could not be exported to the OTLP collector');
            lost = 0;
          }
        }
        done(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
  };
}
