import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { SpoolStats } from '../recording/spool-shipper.js';
import { SeriesCounter, SeriesHistogram } from './series-metrics.js';

/** What the spool metrics read when there is no spool shipping to an archive: nothing waits, nothing failed. */
const NO_SPOOL: SpoolStats = Object.freeze({ spooled: 0, quarantined: 0, bytes: 0, maxBytes: 0, admitting: true, uploadedBytes: 0, uploaded: 0, failures: 0 });

/** Options of {@link createGatewayMetrics}; sources are read at scrape time, so nothing polls between scrapes. */
export interface GatewayMetricsOptions {
  /** Adds a `user` label to exchanges and tokens (`metrics.per_user`). Default false. */
  readonly perUser?: boolean;
  /** Reviews still pending in the store (every replica's). Default: none counted. */
  readonly pendingReviews?: () => Promise<number>;
  /** Tunnels this gateway holds open. Default: none counted. */
  readonly tunnelsOpen?: () => number;
  /** The recording spool's counts, when sealed sessions are shipped to an archive of their own. Default: none counted. */
  readonly recordingSpool?: () => SpoolStats | undefined;
  /** Whether Node's default process metrics are collected. Default true. */
  readonly processMetrics?: boolean;
}

/**
 * How often the event-loop delay behind `nodejs_eventloop_lag_*` is sampled, in ms. prom-client's default, 10 ms,
 * is a timer that wakes the loop a hundred times a second whether or not requests keep it awake: 5 ms of CPU
 * a second in an otherwise idle process on a 2-core VM, against 1.3 ms at 100 ms (and 0.2 ms without the
 * histogram). A scrape every 15 s still reads 150 samples.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

/** Seconds, from a millisecond time to about ten minutes: a held request waits for its reviewer in the exchange's duration. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600];

/** The gateway's Prometheus metrics, in a registry of its own: two gateways in one process never share a counter. */
export interface GatewayMetrics {
  readonly registry: Registry;
  readonly perUser: boolean;
  // Moved once per exchange: series kept as plain numbers (see series-metrics.ts).
  readonly exchanges: SeriesCounter<string>;
  readonly exchangeDuration: SeriesHistogram<'connection' | 'via'>;
  readonly upstreamDuration: SeriesHistogram<'connection'>;
  readonly timeToFirstToken: SeriesHistogram<'connection'>;
  readonly tokens: SeriesCounter<string>;
  readonly maskedValues: SeriesCounter<'connection' | 'entity'>;
  readonly identityFailures: Counter;
  /** The Prometheus text exposition of every metric. */
  scrape(): Promise<{ readonly contentType: string; readonly body: string }>;
}

/** Creates the gateway's metrics; with `metrics_listen` unset the gateway creates none and pays nothing. */
export function createGatewayMetrics(options: GatewayMetricsOptions = {}): GatewayMetrics {
  const perUser = options.perUser ?? false;
  const registry = new Registry();
  const user = perUser ? ['user'] : [];
  const exchanges = new SeriesCounter({
    name: 'sluice_exchanges_total',
    help: 'Exchanges that ended, by connection, how the caller came (tunnel, proxy), policy decision and error code ("none" when answered without one)',
    labelNames: ['connection', 'via', 'decision', 'code', ...user],
    registers: [registry],
  });
  const exchangeDuration = new SeriesHistogram({
    name: 'sluice_exchange_duration_seconds',
    help: 'From the request head reaching the gateway to the exchange end being recorded (review waits included)',
    labelNames: ['connection', 'via'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const upstreamDuration = new SeriesHistogram({
    name: 'sluice_upstream_duration_seconds',
    help: 'From the request going upstream to the last byte of its answer; the gateway overhead is exchange minus upstream duration',
    labelNames: ['connection'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const timeToFirstToken = new SeriesHistogram({
    name: 'sluice_time_to_first_token_seconds',
    help: 'From the request head reaching the gateway to the first byte of a streamed (text/event-stream) answer reaching the caller',
    labelNames: ['connection'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const tokens = new SeriesCounter({
    name: 'sluice_tokens_total',
    help: "Tokens as the answers' usage reports them, by connection, model and direction (input, output)",
    labelNames: ['connection', 'model', 'direction', ...user],
    registers: [registry],
  });
  const maskedValues = new SeriesCounter({
    name: 'sluice_masked_values_total',
    help: 'Values masking replaced in answers, by connection and entity',
    labelNames: ['connection', 'entity'],
    registers: [registry],
  });
  const identityFailures = new Counter({
    name: 'sluice_identity_failures_total',
    help: 'Requests and tunnels refused because the caller could not be authenticated, by error code',
    labelNames: ['code'],
    registers: [registry],
  });
  const { pendingReviews, tunnelsOpen, recordingSpool } = options;
  // Read from the shipper at scrape time; its totals only grow, so they are exposed as counters.
  const spoolGauge = (name: string, help: string, read: (s: SpoolStats) => number, counter = false): void => {
    const collect = function (this: Gauge | Counter): void {
      const value = read(recordingSpool?.() ?? NO_SPOOL);
      if (this instanceof Gauge) this.set(value);
      else {
        this.reset();
        this.inc(value);
      }
    };
    // Each worker of `--workers N` has a spool of its own: merged, the primary's scrape sums them.
    if (counter) new Counter({ name, help, registers: [registry], collect, aggregator: 'sum' });
    else new Gauge({ name, help, registers: [registry], collect, aggregator: 'sum' });
  };
  spoolGauge('sluice_recordings_spooled', 'Finished sessions in the spool waiting for (or in) an upload to the archive', (s) => s.spooled);
  spoolGauge('sluice_recordings_quarantined', 'Finished sessions kept in the spool and not shipped (failed verification, repeated upload failures, a different object in the archive)', (s) => s.quarantined);
  spoolGauge('sluice_recordings_spool_bytes', 'Bytes the spool holds for the archive: finished sessions, and open ones not yet uploaded as segments; past storage.spool_max new exchanges are refused', (s) => s.bytes);
  spoolGauge('sluice_recordings_uploaded_bytes_total', 'Bytes of sessions shipped to the archive since start', (s) => s.uploadedBytes, true);
  spoolGauge('sluice_recordings_upload_failures_total', 'Uploads of sessions to the archive that failed since start (each is retried, then quarantined)', (s) => s.failures, true);
  new Gauge({
    name: 'sluice_reviews_pending',
    help: 'Reviews waiting for a reviewer, across every replica sharing the store',
    registers: [registry],
    // Every worker reads the same store: summed, N workers would count each review N times.
    aggregator: 'max',
    async collect() {
      this.set(pendingReviews === undefined ? 0 : await pendingReviews());
    },
  });
  new Gauge({
    name: 'sluice_tunnels_open',
    help: 'Tunnels this gateway holds open',
    registers: [registry],
    // Each worker holds its own tunnels: the gateway's are their sum.
    aggregator: 'sum',
    collect() {
      this.set(tunnelsOpen === undefined ? 0 : tunnelsOpen());
    },
  });
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  return {
    registry,
    perUser,
    exchanges,
    exchangeDuration,
    upstreamDuration,
    timeToFirstToken,
    tokens,
    maskedValues,
    identityFailures,
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
