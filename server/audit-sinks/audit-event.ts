import { randomBytes } from 'node:crypto';
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

/** `count` new event ids from one draw of randomness: id `i` is `aev_` + the hex of bytes 16i to 16i+15. */
export function auditEventIds(count: number): (i: number) => string {
  const hex = randomBytes(16 * count).toString('hex');
  return (i) => `aev_${hex.slice(32 * i, 32 * i + 32)}`;
}
