import { z } from 'zod';
import { approvalSchema, connectionGrantSchema, grantConfigProblems } from '../approval/approval-config.js';
import { policiesSchema, policyConfigProblems, policyDefaultSchema } from '../policy/policy-config.js';
import { maskingConfigProblems, maskingProfileName, maskingProfileSchema, maskingSettingsSchema } from '../masking/profile-schema.js';
import { connectionMaskingSchema, liftRequestMasking, requestMaskingProblems } from '../masking/request-masking-config.js';
import { GRPC_CONNECTION_FIELDS, HTTP_CONNECTION_FIELDS, TCP_CONNECTION_FIELDS } from '../protocols/connection-fields.js';
import { replicaSchema } from '../replica/replica-config.js';
import { metricsSettingsSchema } from '../metrics/metrics-config.js';
import { telemetrySettingsSchema } from '../telemetry/telemetry-config.js';
import { quotasSchema } from '../quotas/quota-config.js';
import { AUDIT_SINK_DEFAULTS, AUDIT_SINK_FIELDS } from '../audit-sinks/audit-sinks-config.js';
import { byteSizeSchema } from './byte-size.js';
import { durationSchema as duration } from './duration.js';
import { recordingsSchema } from './recordings-schema.js';

/** Connection names appear in URLs and CLI arguments. */
const connectionName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be lower-case letters, digits, ".", "_" or "-" (at most 63)');

const url = z.url({ message: 'must be a URL' });

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:7443');

/** A base64 master key of 32 bytes (AES-256); the message never echoes the value. */
const masterKey = z
  .string()
  .refine((v) => /^[A-Za-z0-9+/_-]+={0,2}$/.test(v.trim()) && Buffer.from(v.trim(), 'base64').length === 32, 'must be base64 of 32 bytes (openssl rand -base64 32)');

/** A PostgreSQL connection URL; the message never echoes the value, which may hold a password. */
const postgresUrl = z
  .string()
  .refine((v) => /^postgres(ql)?:\/\//.test(v) && URL.canParse(v), 'must be a postgres:// URL, e.g. postgres://sluice@db.internal:5432/sluice');

const recordSettings = z
  .strictObject({
    request_body: z.enum(['masked', 'raw', 'none']).default('masked'),
    response_body: z.enum(['masked', 'raw', 'none']).default('masked'),
    raw: z.boolean().default(false),
  })
  .default({ request_body: 'masked', response_body: 'masked', raw: false });

const connectionCommon = {
  name: connectionName,
  description: z.string().max(500).optional(),
  labels: z.record(z.string(), z.string()).default({}),
  allow_groups: z.array(z.string().min(1)).min(1, 'must name at least one group'),
  /** `[profiles]`, or `{ response, request, style, restore }`: read into `masking` and `request_masking` (liftRequestMasking). */
  masking: connectionMaskingSchema,
  record: recordSettings,
  /** Tunnels need an approved, unexpired grant (`sluice access request`). */
  requires_grant: z.boolean().default(false),
  grant: connectionGrantSchema,
};

// Each connection type's own fields come from the connection-type registry (server/protocols).
const httpConnection = z.strictObject({ ...connectionCommon, ...HTTP_CONNECTION_FIELDS });

const tcpConnection = z.strictObject({ ...connectionCommon, ...TCP_CONNECTION_FIELDS });

const grpcConnection = z.strictObject({ ...connectionCommon, ...GRPC_CONNECTION_FIELDS });

export const connectionSchema = z.discriminatedUnion('type', [httpConnection, tcpConnection, grpcConnection]).transform(liftRequestMasking);

export const configSchema = z
  .strictObject({
    listen: hostPort.default('127.0.0.1:7443'),
    public_url: url.optional(),
    tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
    identity: z.strictObject({
      issuer: url,
      audience: z.string().min(1),
      cli_client_id: z.string().min(1),
      groups_claim: z.string().min(1).default('groups'),
      algorithms: z
        .array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
        .min(1)
        .default(['RS256', 'PS256', 'ES256', 'EdDSA']),
      clock_tolerance: duration.default('30s'),
    }),
    roles: z
      .strictObject({
        admin: z.array(z.string()).default([]),
        auditor: z.array(z.string()).default([]),
        reviewer: z.array(z.string()).default([]),
      })
      .default({ admin: [], auditor: [], reviewer: [] }),
    storage: z
      .strictObject({
        dir: z.string().min(1).default('./data'),
        master_key: masterKey.optional(),
        master_keys: z
          .array(z.strictObject({ id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 letters, digits, ".", "_" or "-"'), key: masterKey }))
          .min(1)
          .refine((keys) => new Set(keys.map((k) => k.id)).size === keys.length, 'key ids must be unique')
          .optional(),
        fsync: z.enum(['always', 'batch', 'never']).default('batch'),
        fsync_interval: duration.default('200ms'),
        /** Whether session files compress their records (`none` where record sizes must not depend on content: README, Recordings on disk). */
        compression: z.enum(['deflate', 'none']).default('deflate'),
        retention_days: z.number().int().positive().optional(),
        proxy_session_idle: duration.default('15m'),
        /** The checkpoint signing key (Ed25519 PEM); outside `dir`, so who can rewrite recordings cannot re-sign them. Default `dir/signing-key.pem`. */
        signing_key: z.string().min(1).optional(),
        /** The seal log signs its head once this many entries are unsigned... */
        seal_checkpoint_every: z.number().int().min(1).max(100_000).default(32),
        /** ...and at least this often while any is. */
        seal_checkpoint_interval: duration.default('1m'),
        /** The PostgreSQL the replicas share (`postgres://`; TLS as `pg` reads the URL's query); absent: SQLite under `dir`. */
        database: postgresUrl.optional(),
        /** Connections each replica keeps to `database` at most. */
        database_pool: z.number().int().min(1).max(1000).default(10),
        /** Where sealed sessions are kept: a bucket (`type: s3`) or a shared directory (`type: dir`); absent, under `dir`. The spool stays under `dir`. */
        recordings: recordingsSchema.optional(),
        /** With `recordings`: bytes of finished sessions the spool may hold waiting for the archive; past it new exchanges are refused. */
        spool_max: byteSizeSchema.default('10GiB'),
        /** Retries of a failed upload to `recordings` before the session is quarantined in the spool. */
        upload_retries: z.number().int().min(0).max(100).default(10),
        /** First retry delay of a failed upload, doubled per failure (with jitter) up to `upload_backoff_max`. */
        upload_backoff: duration.default('1s'),
        upload_backoff_max: duration.default('5m'),
        /** With `recordings`: an open session's new records go up as a segment at least this often, so other replicas read it while it runs. */
        upload_interval: duration.default('10s'),
        /** ...and as soon as this many bytes wait; a segment holds about this much (a larger record goes alone). */
        segment_max: byteSizeSchema.default('8MiB'),
      })
      .refine((s) => s.master_key === undefined || s.master_keys === undefined, {
        message: 'set either master_key or master_keys, not both',
        path: ['master_keys'],
      })
      .default({
        dir: './data',
        fsync: 'batch',
        fsync_interval: '200ms',
        compression: 'deflate',
        proxy_session_idle: '15m',
        seal_checkpoint_every: 32,
        seal_checkpoint_interval: '1m',
        database_pool: 10,
        spool_max: '10GiB',
        upload_retries: 10,
        upload_backoff: '1s',
        upload_backoff_max: '5m',
        upload_interval: '10s',
        segment_max: '8MiB',
      }),
    tunnel: z
      .strictObject({
        max_streams: z.number().int().positive().default(256),
        max_frame: z.number().int().min(1024).default(1024 * 1024),
        window: z.number().int().min(1024).default(256 * 1024),
        ping_interval: duration.default('30s'),
        max_per_user: z.number().int().positive().default(32),
      })
      .default({ max_streams: 256, max_frame: 1024 * 1024, window: 256 * 1024, ping_interval: '30s', max_per_user: 32 }),
    /**
     * Who reads recordings: auditors and admins always; users their own contents only with `users_read_own`.
     * Where audit events go (`sinks`, from an outbox in the store capped at `outbox_max`: server/audit-sinks).
     */
    audit: z.strictObject({ users_read_own: z.boolean().default(false), ...AUDIT_SINK_FIELDS }).default({ users_read_own: false, ...AUDIT_SINK_DEFAULTS }),
    connections: z.array(connectionSchema).default([]),
    masking: maskingSettingsSchema,
    masking_profiles: z.record(maskingProfileName, maskingProfileSchema).default({}),
    policies: policiesSchema,
    policy_default: policyDefaultSchema,
    // Bytes of a request body policy may read before judging it; a rule about the body refuses longer ones.
    policy_read_ahead: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
    approval: approvalSchema,
    /** Who this gateway is among replicas sharing a store, and how soon a silent one is swept (server/replica). */
    replica: replicaSchema,
    /** Where Prometheus scrapes `GET /metrics`: a listener of its own (server/metrics); absent, no metrics are kept. */
    metrics_listen: hostPort.optional(),
    /** Where gRPC clients without the CLI call `grpc` connections: a listener of its own (server/protocols/grpc-listener.ts); absent, none. */
    grpc_listen: hostPort.optional(),
    /** How long a SIGTERM lets exchanges in flight finish before their connections are cut (server/cluster/graceful-drain.ts). */
    shutdown_grace: duration.default('30s'),
    metrics: metricsSettingsSchema,
    /** Traces of exchanges over OTLP/HTTP (server/telemetry); off until `otlp_endpoint` is set. */
    telemetry: telemetrySettingsSchema,
    /** Requests per minute and token budgets by user, group, connection and model, counted in the store (server/quotas). */
    quotas: quotasSchema,
  })
  .superRefine((cfg, ctx) => {
    for (const p of [...maskingConfigProblems(cfg), ...requestMaskingProblems(cfg)]) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
    for (const p of [...policyConfigProblems(cfg), ...grantConfigProblems(cfg)]) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
    const seen = new Set<string>();
    cfg.connections.forEach((c, i) => {
      if (seen.has(c.name)) {
        ctx.addIssue({ code: 'custom', path: ['connections', i, 'name'], message: `duplicate connection name "${c.name}"` });
      }
      seen.add(c.name);
    });
  });

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type ConnectionConfig = Config['connections'][number];
export type HttpConnectionConfig = Extract<ConnectionConfig, { type: 'http' }>;
export type TcpConnectionConfig = Extract<ConnectionConfig, { type: 'tcp' }>;
export type GrpcConnectionConfig = Extract<ConnectionConfig, { type: 'grpc' }>;
export type Role = keyof Config['roles'];
