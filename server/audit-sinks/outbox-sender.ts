import type { Clock } from '../clock.js';
import type { AuditOutboxRow } from '../store/store.js';
import type { AuditEvent } from './audit-event.js';
import { AuditDeliveryError, type AuditSink } from './audit-sink.js';
import type { AuditLog } from './audit-events.js';
import { DEFAULT_AUDIT_FLUSH_MS } from './audit-sinks-config.js';
import { retryDelay } from './retry-delay.js';

/** What a sender needs of the store. */
export interface AuditOutboxReader {
  claimAuditBatch(sink: string, holder: string, at: number, leaseMs: number, limit: number, delivered?: readonly number[]): Promise<AuditOutboxRow[] | undefined>;
  ackAuditEvents(sink: string, seqs: readonly number[]): Promise<void>;
}

/** Options of {@link startOutboxSender}; defaults are resolved here. */
export interface OutboxSenderOptions {
  /** The sink's name in the outbox. */
  readonly name: string;
  readonly sink: AuditSink;
  readonly outbox: AuditOutboxReader;
  /** This replica: the sink's lease holder while it sends. */
  readonly holder: string;
  readonly batch: number;
  /** How long one delivery may take; the lease outlasts it threefold, so it never lapses mid-send. */
  readonly timeoutMs: number;
  readonly retryDelayMs: number;
  readonly maxRetryDelayMs: number;
  /** How often an idle sender looks for events other replicas appended. Default 1000 ms. */
  readonly pollMs?: number;
  /**
   * After a batch that was not full, or a wake from idle, how long events gather before the next claim.
   * Default twice `audit.flush_interval`'s default, as the audit system passes it for the configured one.
   * Under load this is what makes batches large: every claim, send and ack costs the same whether it carries
   * one event or a hundred, and the events wait in the durable outbox meanwhile, not in memory.
   */
  readonly lingerMs?: number;
  /** What lease times are measured by. */
  readonly clock: Clock;
  readonly random?: () => number;
  /** Told of every batch's outcome. */
  readonly onResult?: (result: 'delivered' | 'failed', count: number) => void;
  readonly log?: AuditLog;
}

/** One sink's sender: claims, sends, acks; retries with backoff; stops on `stop`. */
export interface OutboxSender {
  /**
   * Told of a local append: an idle sender looks for events after `lingerMs` rather than at the next poll
   * (never cuts a retry's wait short).
   */
  wake(): void;
  stop(): Promise<void>;
}

/**
 * Sends one sink's events from the outbox, oldest first, one batch at a time: at least once (a batch is
 * acked only after the sink has it, so a crash between the two sends it again) and in outbox order (a
 * failed batch is retried whole before anything after it). Each claim renews the sink's lease, so while
 * one replica sends, the others wait. A delivered batch is acked by the next claim, in its transaction,
 * which normally comes within `lingerMs` (after `pollMs` while the store cannot be reached), or at `stop`:
 * one transaction per batch fewer, at the price of a crash in that window sending the batch again.
 */
export function startOutboxSender(options: OutboxSenderOptions): OutboxSender {
  const pollMs = options.pollMs ?? 1000;
  const lingerMs = options.lingerMs ?? 2 * DEFAULT_AUDIT_FLUSH_MS;
  const leaseMs = Math.max(30_000, options.timeoutMs * 3);
  const random = options.random ?? Math.random;
  let stopped = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  let wakeable = false;
  let resume: (() => void) | undefined;
  /** Seqs of the last batch delivered, acked with the next claim. */
  let delivered: number[] = [];

  /** Resolves after `ms`, or sooner when woken (then to true). */
  const pause = (ms: number, canWake: boolean): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      wakeable = canWake;
      resume = () => resolve(true);
      timer = setTimeout(resolve, ms, false);
    }).then((woken) => {
      clearTimeout(timer);
      timer = undefined;
      resume = undefined;
      wakeable = false;
      return woken;
    });

  const sink = options.sink;
  // A sink that writes the documents as they are skips parsing them only to serialise them again.
  const send = (docs: readonly string[]): Promise<void> => (sink.sendDocs !== undefined ? sink.sendDocs(docs) : sink.send(docs.map((d) => JSON.parse(d) as AuditEvent)));

  /** One claim and send; resolves to how long to wait before the next, and whether a local append may cut it short. */
  async function step(): Promise<[number, boolean]> {
    let rows: AuditOutboxRow[] | undefined;
    try {
      rows = await options.outbox.claimAuditBatch(options.name, options.holder, options.clock.now(), leaseMs, options.batch, delivered);
      delivered = [];
    } catch (err) {
      // A delivered batch not acked yet stays so: the next claim acks it.
      options.log?.warn({ sink: options.name, err: (err as Error).message }, 'the audit outbox cannot be read');
      return [pollMs, false];
    }
    if (rows === undefined || rows.length === 0) return [pollMs, true];
    const docs = rows.length === 1 ? rows[0]!.docs : rows.flatMap((r) => r.docs);
    try {
      // A claim holds at most `batch` events unless one row alone is larger (written under a larger
      // `batch` before a restart): the sink still never gets more than `batch` in one send.
      for (let from = 0; from < docs.length; from += options.batch) await send(docs.length <= options.batch ? docs : docs.slice(from, from + options.batch));
    } catch (err) {
      attempt++;
      options.onResult?.('failed', docs.length);
      const detail = err instanceof AuditDeliveryError ? err.detail : (err as Error).message;
      const wait = retryDelay(attempt, options.retryDelayMs, options.maxRetryDelayMs, random);
      // The first failure and then every tenth: a sink down for hours must not flood the log.
      if (attempt === 1 || attempt % 10 === 0) options.log?.warn({ sink: options.name, failure: detail, attempt, retry_in_ms: wait }, 'audit events could not be delivered; retrying');
      return [wait, false];
    }
    if (attempt > 0) options.log?.warn({ sink: options.name, attempts: attempt + 1 }, 'audit events are delivered again');
    attempt = 0;
    options.onResult?.('delivered', docs.length);
    delivered = rows.map((r) => r.seq);
    // A claim takes whole rows (one per flush of the emitter), so one that found more waiting than it
    // could take still comes back short of `batch` when the next row did not fit: over half a batch says
    // events are arriving faster than the linger would gather them, so go on at once. Less says the
    // outbox was nearly empty: let events gather.
    return [docs.length * 2 > options.batch ? 0 : lingerMs, false];
  }

  const running = (async () => {
    while (!stopped) {
      const [wait, canWake] = await step();
      if (stopped) break;
      // Woken from idle by an append, the sender still lets events gather before it claims: under load the
      // emitter appends a row every flush, and a claim at each wake would send each row alone, paying the
      // claim, the delivery and the ack per row rather than per batch.
      if (wait > 0) {
        if ((await pause(wait, canWake)) && !stopped) await pause(lingerMs, false);
      } else await new Promise((r) => setImmediate(r));
    }
  })();

  return {
    wake() {
      if (wakeable) resume?.();
    },
    async stop() {
      stopped = true;
      resume?.();
      await running;
      if (delivered.length > 0) {
        await options.outbox.ackAuditEvents(options.name, delivered).catch((err: Error) => {
          // Sent but not acked: the batch goes again (at least once) from whichever replica sends next.
          options.log?.warn({ sink: options.name, err: err.message }, 'delivered audit events could not be marked delivered; they will be sent again');
        });
      }
      await options.sink.close();
    },
  };
}
