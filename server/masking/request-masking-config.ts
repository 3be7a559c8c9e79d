import { z } from 'zod';

/**
 * A connection's masking of prompts, written under `masking:` as `{ response, request, style, restore }`
 * and kept on the validated connection as `request_masking` (its `masking` stays the list of answer
 * profiles, as with the short form `masking: [profiles]`).
 */
export const requestMaskingSchema = z.strictObject({
  /** Profiles applied to the request body before it is forwarded. */
  profiles: z.array(z.string()).min(1, 'must name at least one masking profile'),
  /** `placeholder`: every value becomes `<LABEL_N>` whatever its profile's style; `profile`: each profile's own style. */
  style: z.enum(['profile', 'placeholder']).default('profile'),
  /** Put the values back where the answer repeats their placeholders (kept in memory for the exchange only). */
  restore: z.boolean().default(false),
});

/** Validated request masking of a connection. */
export type RequestMaskingConfig = z.output<typeof requestMaskingSchema>;

/** A connection's `masking`: the list of answer profiles, or the long form with the request's. */
export const connectionMaskingSchema = z
  .union([
    z.array(z.string()),
    z.strictObject({
      response: z.array(z.string()).default([]),
      request: z.array(z.string()).min(1, 'must name at least one masking profile'),
      style: requestMaskingSchema.shape.style,
      restore: requestMaskingSchema.shape.restore,
    }),
  ])
  .default([]);

/** A validated connection as the rest of sluice reads it: `masking` the answer profiles, the request's apart. */
export type WithRequestMasking<C> = C extends { readonly masking: unknown }
  ? Omit<C, 'masking'> & { readonly masking: string[]; readonly request_masking?: RequestMaskingConfig }
  : never;

/**
 * Reads a connection's `masking: { response, request, style, restore }` into `masking: response` and
 * `request_masking`, so every part of sluice that reads answer profiles reads one list either way.
 */
export function liftRequestMasking<C extends { readonly masking: z.output<typeof connectionMaskingSchema> }>(connection: C): WithRequestMasking<C> {
  const masking = connection.masking;
  if (Array.isArray(masking)) return connection as unknown as WithRequestMasking<C>;
  const { response, request, style, restore } = masking;
  return { ...connection, masking: response, request_masking: { profiles: request, style, restore } } as unknown as WithRequestMasking<C>;
}

/** Problems of request masking settings: unknown profiles, and `restore` without placeholders to restore. */
export function requestMaskingProblems(cfg: {
  readonly masking_profiles: Readonly<Record<string, { readonly style: string }>>;
  readonly connections: readonly { readonly type: string; readonly request_masking?: RequestMaskingConfig }[];
}): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  cfg.connections.forEach((c, i) => {
    const r = c.request_masking;
    if (r === undefined) return;
    if (c.type !== 'http') {
      // Only HTTP bodies are read whole and rewritten; a byte stream or a gRPC call would leave unmasked.
      problems.push({ path: ['connections', i, 'masking', 'request'], message: `request masking is for http connections, not ${c.type}` });
      return;
    }
    r.profiles.forEach((name, j) => {
      if (!Object.hasOwn(cfg.masking_profiles, name)) problems.push({ path: ['connections', i, 'masking', 'request', j], message: `unknown masking profile "${name}"` });
    });
    const placeholders = r.style === 'placeholder' || r.profiles.some((n) => cfg.masking_profiles[n]?.style === 'placeholder');
    if (r.restore && !placeholders) {
      problems.push({ path: ['connections', i, 'masking', 'restore'], message: 'restore needs placeholders: style: placeholder on the request masking or on one of its profiles' });
    }
  });
  return problems;
}

/**
 * The request masking of connection `name` in a config file's raw `connections` section, read without
 * validating the rest of the file (`sluice mask test --request --connection`); a sentence saying why
 * there is none.
 */
export function connectionRequestMasking(root: unknown, name: string): Pick<RequestMaskingConfig, 'profiles' | 'style'> | string {
  const connections = typeof root === 'object' && root !== null ? (root as { connections?: unknown }).connections : undefined;
  const raw = Array.isArray(connections) ? (connections as unknown[]).find((c) => (c as { name?: unknown } | null)?.name === name) : undefined;
  if (raw === undefined) return `no connection is named "${name}"`;
  const { type, masking } = raw as { type?: unknown; masking?: unknown };
  if (type !== 'http') return `connection "${name}" is ${String(type)}: request masking is for http connections`;
  const parsed = connectionMaskingSchema.safeParse(masking);
  if (!parsed.success) return `connections "${name}".masking: ${parsed.error.issues[0]?.message ?? 'invalid'}`;
  if (Array.isArray(parsed.data)) return `connection "${name}" masks no request bodies (it has no masking.request)`;
  return { profiles: parsed.data.request, style: parsed.data.style };
}
