import type { AuditEvent } from './audit-event.js';

/** One destination of audit events: delivers a batch whole or throws (the batch is then retried whole). */
export interface AuditSink {
  /** Resolves once the receiver has the events (an HTTP 2xx, bytes written to the socket, a synced file). */
  send(events: readonly AuditEvent[]): Promise<void>;
  /**
   * The same delivery from the events' JSON documents as the outbox holds them (each one `JSON.stringify`
   * of an event), for a sink that writes them unchanged; the sender prefers it when a sink has it.
   */
  sendDocs?(docs: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

/** A delivery the receiver refused or that never reached it; `detail` names why without any secret. */
export class AuditDeliveryError extends Error {
  readonly detail: string;
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`audit delivery failed: ${detail}`, options);
    this.detail = detail;
  }
}

/** What went wrong with a fetch, as a short word: `HTTP 503`, `ECONNREFUSED`, `TimeoutError`. */
export function fetchFailure(err: unknown): string {
  const cause = (err as { cause?: { code?: string } }).cause;
  return cause?.code ?? (err as Error).name ?? String(err);
}
