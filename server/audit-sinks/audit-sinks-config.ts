import { z } from 'zod';
import { durationSchema as duration, parseDuration } from '../config/duration.js';

/** Every kind of audit event, stable codes a SIEM rule can match on. */
export const AUDIT_EVENT_KINDS = [
  'session.opened',
  'session.closed',
  'exchange',
  'review.requested',
  'review.approval',
  'review.approved',
  'review.rejected',
  'review.expired',
  'review.abandoned',
  'grant.created',
  'grant.revoked',
  'admin.reload',
  'admin.erase',
  'identity.failure',
] as const;

export type AuditEventKind = (typeof AUDIT_EVENT_KINDS)[number];

/** A kind, or every kind of a family (`review.*`). */
const eventPattern = z.string().refine(
  (p) => p === '*' || (AUDIT_EVENT_KINDS as readonly string[]).includes(p) || (p.endsWith('.*') && AUDIT_EVENT_KINDS.some((k) => k.startsWith(p.slice(0, -1)))),
  { message: `must be *, one of ${AUDIT_EVENT_KINDS.join(', ')}, or a family such as review.*` },
);

/** Events sent in one delivery at most: the sinks' `batch`, whose default is each type's own. */
const batchSize = z.number().int().min(1).max(10_000);

const sinkCommon = {
  /** Names the sink in the outbox, its lease, metrics and logs; renaming a sink leaves its undelivered events behind. */
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 letters, digits, ".", "_" or "-"'),
  /** Kinds this sink receives; default every kind. */
  events: z.array(eventPattern).min(1).default(['*']),
  /** Events sent in one delivery at most: a receiver's payload is what bounds it. */
  batch: batchSize.default(100),
  /** How long one delivery may take before it counts as failed. */
  timeout: duration.default('10s'),
  /** First delay after a failed delivery; it doubles (with jitter) up to `max_retry_delay`. */
  retry_delay: duration.default('1s'),
  max_retry_delay: duration.default('5m'),
};

const httpUrl = z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' });

const webhookSink = z.strictObject({
  ...sinkCommon,
  type: z.literal('webhook'),
  url: httpUrl,
  /** HMAC-SHA256 key; the signature goes in `x-sluice-signature`, as review webhooks sign theirs. */
  secret: z.string().min(16, 'must be at least 16 characters').optional(),
});

const splunkHecSink = z.strictObject({
  ...sinkCommon,
  type: z.literal('splunk_hec'),
  /** The HEC base URL (`https://splunk:8088`); events go to `/services/collector/event` under it. */
  url: httpUrl,
  /** The HEC token; write it as `${env:NAME}`. */
  token: z.string().min(1),
  index: z.string().min(1).optional(),
  sourcetype: z.string().min(1).default('sluice:audit'),
  source: z.string().min(1).default('sluice'),
});

const syslogSink = z.strictObject({
  ...sinkCommon,
  type: z.literal('syslog'),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65_535),
  /** RFC 5425 TLS; `ca` names a PEM file of the authorities to trust besides the system's. */
  tls: z.boolean().default(false),
  ca: z.string().min(1).optional(),
});

const fileSink = z.strictObject({
  ...sinkCommon,
  type: z.literal('file'),
  /**
   * A file takes a batch of any size in one synced write, and that write (not the bytes) is what a delivery
   * costs: a larger default lets a sender that fell behind (a busy disk makes each sync take tens of
   * milliseconds) catch up ten times as fast, where a batch of 100 kept it to 100 events per sync.
   */
  batch: batchSize.default(1000),
  /** JSON lines appended here; rotated to `path.1` … `path.<keep>` once it reaches `max_bytes`. */
  path: z.string().min(1),
  max_bytes: z.number().int().min(1024).default(100 * 1024 * 1024),
  keep: z.number().int().min(0).max(1000).default(5),
});

export const auditSinkSchema = z.discriminatedUnion('type', [webhookSink, splunkHecSink, syslogSink, fileSink]);

export type AuditSinkConfig = z.output<typeof auditSinkSchema>;

/**
 * Fields `audit.sinks`, `audit.outbox_max` and `audit.flush_interval` add to the `audit` section (server/config/schema.ts). Optional
 * rather than defaulted, so an `audit` section built in code without them stays a valid one; their
 * defaults are resolved once, by {@link auditSinkSettings}.
 */
export const AUDIT_SINK_FIELDS = {
  sinks: z
    .array(auditSinkSchema)
    .refine((sinks) => new Set(sinks.map((s) => s.name)).size === sinks.length, 'sink names must be unique')
    .optional(),
  /** Outbox rows kept at most, every sink's together; past it the oldest are dropped (and counted). Default 100000. */
  outbox_max: z.number().int().min(1).optional(),
  /** How long events wait in memory before one transaction writes them to the outbox: what a crash can lose. Default 100ms. */
  flush_interval: duration.refine((d) => parseDuration(d) <= 10_000, 'must be at most 10s: events wait in memory until then').optional(),
};

/**
 * `audit.flush_interval`'s default. Each flush is one transaction in the store, and its row one claim, send
 * and ack per sink: each costs about the same whatever it carries. At 1,000 exchanges a second, 100 ms makes
 * about 10 appends and 10 claims a second; 25 ms made 40 and 20, and cost the gateway about 5 % more CPU per
 * exchange with a file sink. A crash loses what waits in memory: up to this long of events.
 */
export const DEFAULT_AUDIT_FLUSH_MS = 100;

/** Defaults of the section: none (the fields are optional). */
export const AUDIT_SINK_DEFAULTS = {};

/** The audit sink settings with their defaults. */
export function auditSinkSettings(audit: { readonly sinks?: readonly AuditSinkConfig[]; readonly outbox_max?: number; readonly flush_interval?: string }): {
  sinks: readonly AuditSinkConfig[];
  outboxMax: number;
  flushIntervalMs: number;
} {
  return { sinks: audit.sinks ?? [], outboxMax: audit.outbox_max ?? 100_000, flushIntervalMs: audit.flush_interval === undefined ? DEFAULT_AUDIT_FLUSH_MS : parseDuration(audit.flush_interval) };
}

/** Whether a sink's `events` take `kind`. */
export function sinkTakes(patterns: readonly string[], kind: AuditEventKind): boolean {
  return patterns.some((p) => p === '*' || p === kind || (p.endsWith('.*') && kind.startsWith(p.slice(0, -1))));
}
