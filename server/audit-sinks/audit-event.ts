import { randomUUID } from 'node:crypto';
import type { AuditEventKind } from './audit-sinks-config.js';

/**
 * One audit event as every sink receives it. Facts only: who, what, where, outcomes and counts; never a
 * body, a header value or a token, so a SIEM holds nothing the recordings encrypt.
 */
export interface AuditEvent {
  /** Unique (`aev_` + 32 hex digits): a receiver drops the duplicates at-least-once delivery may bring. */
  readonly id: string;
  readonly kind: AuditEventKind;
  /** Milliseconds since the epoch. */
  readonly at: number;
  /** The replica that saw it happen. */
  readonly replica: string;
  /** The session it belongs to, when it belongs to one. */
  readonly session?: string;
  /** The kind's own facts (see README, "Audit events to a SIEM"). */
  readonly [field: string]: unknown;
}

/** A new event id. */
export function newAuditEventId(): string {
  return `aev_${randomUUID().replaceAll('-', '')}`;
}
