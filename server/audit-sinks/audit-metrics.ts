import { Counter, Gauge, type Registry } from 'prom-client';

/** The audit delivery metrics, in the gateway's registry. */
export interface AuditMetrics {
  /** Events per sink by result (`delivered`, `failed`: a failed batch counts again at each retry). */
  readonly events: Counter;
  /** Events lost: cut from the outbox at `audit.outbox_max`, or from the memory queue when it was full. */
  readonly dropped: Counter;
}

/** Registers the audit metrics; the depth gauge asks the store at scrape time. */
export function registerAuditMetrics(registry: Registry, sinks: readonly string[], depth: (sink: string) => Promise<number>): AuditMetrics {
  const events = new Counter({
    name: 'sluice_audit_events_total',
    help: 'Audit events sent to each sink, by result (delivered, failed; a failed batch counts at every attempt)',
    labelNames: ['sink', 'result'],
    registers: [registry],
  });
  const dropped = new Counter({
    name: 'sluice_audit_events_dropped_total',
    help: 'Audit events dropped before delivery: the oldest past audit.outbox_max (from) or a full memory queue (queue)',
    labelNames: ['from'],
    registers: [registry],
  });
  new Gauge({
    name: 'sluice_audit_outbox_depth',
    help: 'Audit events waiting in the outbox for each sink, across every replica sharing the store',
    labelNames: ['sink'],
    registers: [registry],
    // The outbox is the store's, shared by every worker: merged across workers it is read once, not summed.
    aggregator: 'max',
    async collect() {
      for (const sink of sinks) this.set({ sink }, await depth(sink).catch(() => 0));
    },
  });
  return { events, dropped };
}
