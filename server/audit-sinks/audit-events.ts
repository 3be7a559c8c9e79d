import type { AuditOutboxEntry } from '../store/store.js';
import { auditEventIds } from './audit-event.js';
import { DEFAULT_AUDIT_FLUSH_MS, sinkTakes, type AuditEventKind, type AuditSinkConfig } from './audit-sinks-config.js';

/** What the emitter writes to: the store's outbox. */
export interface AuditOutboxWriter {
  appendAuditEvents(entries: readonly AuditOutboxEntry[], max: number): Promise<number>;
}

/** Where the emitter reports; fastify's logger fits. */
export interface AuditLog {
  warn(obj: object, msg: string): void;
}

/** Options of {@link createAuditEvents}; defaults are resolved here. */
export interface AuditEventsOptions {
  readonly sinks: readonly AuditSinkConfig[];
  /** Stamped on every event. */
  readonly replica: string;
  /** `audit.outbox_max`. */
  readonly outboxMax: number;
  /** Events waiting in memory for the outbox at most; past it the oldest is dropped. Default 10000. */
  readonly maxQueued?: number;
  /** How long an event waits in memory before its batch is written. Default {@link DEFAULT_AUDIT_FLUSH_MS}. */
  readonly flushIntervalMs?: number;
  /** Events written in one append at most. Default 1000. */
  readonly maxBatch?: number;
  readonly now?: () => number;
  /** Told of events lost: cut from the outbox at its cap, or from the memory queue when it was full. */
  readonly onDropped?: (count: number, where: 'outbox' | 'queue') => void;
  /** Told after each append, so the local senders look at once. */
  readonly onAppended?: () => void;
  readonly log?: AuditLog;
}

/**
 * The gateway's one audit emitter, passed to every place an audited thing happens. `emit` costs the data
 * path one push to a bounded array: appending to the outbox happens off the hot path, every
 * `flushIntervalMs` (100 ms by default), in one transaction per batch. What a crash loses is what is in that array.
 */
export interface AuditEvents {
  /** Whether any sink is configured; when not, `emit` does nothing. */
  readonly enabled: boolean;
  /** Queues one event; returns at once and never throws. `fields` is kept as given until written: a fresh object, not changed after. */
  emit(kind: AuditEventKind, fields?: { readonly session?: string; readonly [field: string]: unknown }): void;
  /** Starts writing to the outbox; events emitted before (while storage opened) are written then. */
  attach(outbox: AuditOutboxWriter): void;
  /** Resolves when what was queued before the call is in the outbox (or the write failed). */
  flush(): Promise<void>;
  /** Writes what is queued and stops. */
  close(): Promise<void>;
}

/** An emitter that takes nothing: the gateway without `audit.sinks`. */
export const NO_AUDIT_EVENTS: AuditEvents = Object.freeze({
  enabled: false,
  emit: () => undefined,
  attach: () => undefined,
  flush: () => Promise.resolve(),
  close: () => Promise.resolve(),
});

/** The fields every event is stamped with; a kind's facts never take these names. */
const STAMPED = ['id', 'kind', 'at', 'replica'] as const;

type EventFields = { readonly session?: string; readonly [field: string]: unknown };

/**
 * An event as the queue holds it: what `emit` was given, untouched. Its document (`AuditEvent` as JSON) is
 * made once, when its batch is written; a write that fails keeps it, so a retry writes the same id.
 */
interface QueuedEvent {
  readonly kind: AuditEventKind;
  readonly at: number;
  readonly fields: EventFields;
  doc?: string;
}

export function createAuditEvents(options: AuditEventsOptions): AuditEvents {
  if (options.sinks.length === 0) return NO_AUDIT_EVENTS;
  const maxQueued = options.maxQueued ?? 10_000;
  const flushIntervalMs = options.flushIntervalMs ?? DEFAULT_AUDIT_FLUSH_MS;
  const maxBatch = options.maxBatch ?? 1000;
  const now = options.now ?? Date.now;
  const queue: QueuedEvent[] = [];
  const replicaJson = JSON.stringify(options.replica);
  // Which sinks take a kind, worked out once per kind rather than once per event and sink.
  const sinksOf = new Map<AuditEventKind, readonly AuditSinkConfig[]>();
  const sinksTaking = (kind: AuditEventKind): readonly AuditSinkConfig[] => {
    let sinks = sinksOf.get(kind);
    if (sinks === undefined) {
      sinks = options.sinks.filter((sink) => sinkTakes(sink.events, kind));
      sinksOf.set(kind, sinks);
    }
    return sinks;
  };
  /**
   * The event's JSON: its facts, then the stamp, as `JSON.stringify({...fields, id, kind, at, replica})`
   * would write it, without building that object. The id is drawn here, off the data path.
   */
  const documentOf = (event: QueuedEvent, id: string): string => {
    const facts = JSON.stringify(event.fields);
    const stamp = `"id":"${id}","kind":${JSON.stringify(event.kind)},"at":${JSON.stringify(event.at)},"replica":${replicaJson}}`;
    return facts === '{}' ? `{${stamp}` : `${facts.slice(0, -1)},${stamp}`;
  };
  let outbox: AuditOutboxWriter | undefined;
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> | undefined;
  let closed = false;
  let failing = false;

  const schedule = (): void => {
    if (timer !== undefined || writing !== undefined || outbox === undefined || queue.length === 0) return;
    timer = setTimeout(() => {
      timer = undefined;
      void write();
    }, flushIntervalMs);
    timer.unref();
  };

  async function writeBatch(target: AuditOutboxWriter): Promise<boolean> {
    const batch = queue.slice(0, maxBatch);
    // One outbox row per sink for the batch, cut at the sink's own batch size so a claim can take whole rows.
    const runs = new Map<AuditSinkConfig, string[]>();
    const entries: AuditOutboxEntry[] = [];
    // One draw of randomness for the batch's ids (only a retried batch has documents already).
    const ids = auditEventIds(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const event = batch[i]!;
      const doc = (event.doc ??= documentOf(event, ids(i)));
      for (const sink of sinksTaking(event.kind)) {
        let run = runs.get(sink);
        if (run === undefined || run.length >= sink.batch) {
          run = [];
          runs.set(sink, run);
          entries.push({ sink: sink.name, docs: run });
        }
        run.push(doc);
      }
    }
    try {
      const dropped = entries.length === 0 ? 0 : await target.appendAuditEvents(entries, options.outboxMax);
      // Only now: an event leaves memory once it is in the outbox.
      queue.splice(0, batch.length);
      if (failing) options.log?.warn({ queued: queue.length }, 'audit events are written to the outbox again');
      failing = false;
      if (dropped > 0) {
        options.onDropped?.(dropped, 'outbox');
        options.log?.warn({ dropped, outbox_max: options.outboxMax }, 'audit outbox full: its oldest events were dropped');
      }
      if (entries.length > 0) options.onAppended?.();
      return true;
    } catch (err) {
      if (!failing) options.log?.warn({ err: (err as Error).message, queued: queue.length }, 'audit events could not be written to the outbox; they wait in memory and are retried');
      failing = true;
      return false;
    }
  }

  function write(): Promise<void> {
    if (writing !== undefined) return writing;
    const target = outbox;
    if (target === undefined) return Promise.resolve();
    writing = (async () => {
      while (queue.length > 0) {
        if (!(await writeBatch(target))) break;
      }
    })().finally(() => {
      writing = undefined;
      // A failed write is retried after a pause rather than at once, so a store that is away is not hammered.
      if (queue.length > 0 && !closed) {
        timer = setTimeout(() => {
          timer = undefined;
          void write();
        }, failing ? 1000 : flushIntervalMs);
        timer.unref();
      }
    });
    return writing;
  }

  return {
    enabled: true,
    emit(kind, fields = {}) {
      if (closed) return;
      if (queue.length >= maxQueued) {
        queue.shift();
        options.onDropped?.(1, 'queue');
      }
      // A stamp among the facts would be overwritten; copied without it, as a spread would have done.
      const facts = 'id' in fields || 'kind' in fields || 'at' in fields || 'replica' in fields ? withoutStamp(fields) : fields;
      queue.push({ kind, at: now(), fields: facts });
      schedule();
    },
    attach(target) {
      outbox = target;
      schedule();
    },
    async flush() {
      if (writing !== undefined) await writing;
      clearTimeout(timer);
      timer = undefined;
      await write();
    },
    async close() {
      await this.flush();
      closed = true;
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

/** The facts without a field named as a stamp (`id`, `kind`, `at`, `replica`); producers never give one. */
function withoutStamp(fields: EventFields): EventFields {
  const copy: Record<string, unknown> = { ...fields };
  for (const k of STAMPED) delete copy[k];
  return copy;
}
