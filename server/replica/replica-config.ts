import { hostname } from 'node:os';
import { z } from 'zod';
import { durationSchema, parseDuration } from '../config/duration.js';

/** The defaults of `replica`, in one place. */
export const REPLICA_DEFAULTS = { heartbeat_interval: '5s', dead_after: '30s' } as const;

/** Shortest heartbeat interval: each heartbeat is a write to the shared store. */
const MIN_HEARTBEAT_MS = 100;

/**
 * `replica` in sluice.yaml: who this gateway is among the replicas sharing a store, and how soon the others
 * judge it dead. Ids own open sessions, held requests and tunnel places, so two live processes must never
 * share one.
 */
export const replicaSchema = z
  .strictObject({
    /** Default: the host name plus the worker number (`myhost/0`); see `replicaIdOf`. */
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/, 'must be 1-128 letters, digits, ".", "_", ":", "/" or "-", starting with a letter or digit')
      .optional(),
    heartbeat_interval: durationSchema
      .refine((d) => parseDuration(d) >= MIN_HEARTBEAT_MS, `must be at least ${MIN_HEARTBEAT_MS}ms`)
      .default(REPLICA_DEFAULTS.heartbeat_interval),
    dead_after: durationSchema.default(REPLICA_DEFAULTS.dead_after),
  })
  .superRefine((r, ctx) => {
    // A replica is judged dead only after it missed heartbeats; a wait no longer than one interval sweeps live ones.
    if (parseDuration(r.dead_after) <= parseDuration(r.heartbeat_interval)) {
      ctx.addIssue({
        code: 'custom',
        path: ['dead_after'],
        message: `must be longer than heartbeat_interval (${r.heartbeat_interval}), by several heartbeats: a shorter wait takes live replicas for dead ones and ends their sessions`,
      });
    }
  })
  .default({ ...REPLICA_DEFAULTS });

/** A validated `replica` section. */
export type ReplicaConfig = z.output<typeof replicaSchema>;

/**
 * This process's replica id: `replica.id`, or the host name plus the worker number (`myhost/0`). The one
 * place the host name stands in for an id: a container whose host name is not unique (or changes at every
 * restart) should set `replica.id`. A worker other than 0 appends its number to a configured id too, so the
 * workers of one process never share an id.
 */
export function replicaIdOf(configured: string | undefined, worker = 0): string {
  if (configured === undefined) return `${hostname()}/${worker}`;
  return worker === 0 ? configured : `${configured}/${worker}`;
}
