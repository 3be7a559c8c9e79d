import type { Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import { parseDuration } from '../config/duration.js';
import type { Store } from '../store/store.js';
import type { AuditSink } from './audit-sink.js';
import { createAuditEvents, NO_AUDIT_EVENTS, type AuditEvents, type AuditLog } from './audit-events.js';
import { registerAuditMetrics, type AuditMetrics } from './audit-metrics.js';
import type { AuditSinkConfig } from './audit-sinks-config.js';
import { createFileSink } from './file-sink.js';
import { startOutboxSender, type OutboxSender } from './outbox-sender.js';
import { createSplunkHecSink } from './splunk-hec-sink.js';
import { createSyslogSink } from './syslog-sink.js';
import { createWebhookSink } from './webhook-sink.js';

/** Options of {@link createAuditSystem}. */
export interface AuditSystemOptions {
  /** `audit.sinks`, read once: sinks change with a restart. */
  readonly sinks: readonly AuditSinkConfig[];
  /** `audit.outbox_max`. */
  readonly outboxMax: number;
  /**
   * `audit.flush_interval` in ms: how long events wait in memory before they are written to the outbox.
   * Each sender lets twice that gather before a claim that follows a short one, so a claim under load finds
   * about two rows rather than one.
   */
  readonly flushIntervalMs: number;
  /** This replica: stamped on events, and the holder of a sink's lease while it sends. */
  readonly replica: string;
  readonly clock: Clock;
  readonly log?: AuditLog;
  /** How often an idle sender looks for other replicas' events. Default 1000 ms. */
  readonly pollMs?: number;
  /** Replaces the sinks' fetch; for tests. */
  readonly fetch?: typeof fetch;
}

/** The emitter the gateway passes around, and the senders that drain the outbox. */
export interface AuditSystem {
  readonly events: AuditEvents;
  /** Adds the audit metrics to the gateway's registry (when it keeps metrics). */
  registerMetrics(registry: Registry): void;
  /** Writes to and sends from `store`'s outbox from now on. */
  start(store: Store): void;
  /** Writes what is queued, then stops the senders (undelivered events stay in the outbox for the next start). */
  close(): Promise<void>;
}

/** Creates the sink for a configured sink. */
export function createSink(config: AuditSinkConfig, doFetch?: typeof fetch): AuditSink {
  switch (config.type) {
    case 'webhook':
      return createWebhookSink(config, doFetch);
    case 'splunk_hec':
      return createSplunkHecSink(config, doFetch);
    case 'syslog':
      return createSyslogSink(config);
    case 'file':
      return createFileSink(config);
  }
}

export function createAuditSystem(options: AuditSystemOptions): AuditSystem {
  if (options.sinks.length === 0) return { events: NO_AUDIT_EVENTS, registerMetrics: () => undefined, start: () => undefined, close: () => Promise.resolve() };
  // Built before anything starts: a sink that cannot be made (an unreadable CA file) stops the start.
  const sinks = options.sinks.map((config) => ({ config, sink: createSink(config, options.fetch) }));
  let store: Store | undefined;
  let metrics: AuditMetrics | undefined;
  let senders: OutboxSender[] = [];
  const events = createAuditEvents({
    sinks: options.sinks,
    replica: options.replica,
    outboxMax: options.outboxMax,
    flushIntervalMs: options.flushIntervalMs,
    now: () => options.clock.now(),
    onDropped: (count, from) => metrics?.dropped.inc({ from }, count),
    onAppended: () => senders.forEach((s) => s.wake()),
    ...(options.log === undefined ? {} : { log: options.log }),
  });
  return {
    events,
    registerMetrics(registry) {
      metrics = registerAuditMetrics(registry, options.sinks.map((s) => s.name), (sink) => store?.auditOutboxDepth(sink) ?? Promise.resolve(0));
    },
    start(target) {
      store = target;
      events.attach(target);
      senders = sinks.map(({ config, sink }) =>
        startOutboxSender({
          name: config.name,
          sink,
          outbox: target,
          holder: options.replica,
          batch: config.batch,
          timeoutMs: parseDuration(config.timeout),
          retryDelayMs: parseDuration(config.retry_delay),
          maxRetryDelayMs: parseDuration(config.max_retry_delay),
          lingerMs: 2 * options.flushIntervalMs,
          clock: options.clock,
          ...(options.pollMs === undefined ? {} : { pollMs: options.pollMs }),
          onResult: (result, count) => metrics?.events.inc({ sink: config.name, result }, count),
          ...(options.log === undefined ? {} : { log: options.log }),
        }),
      );
    },
    async close() {
      await events.close();
      await Promise.all(senders.map((s) => s.stop()));
      senders = [];
    },
  };
}
