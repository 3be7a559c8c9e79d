import { z } from 'zod';

/** Where spans go: an OTLP/HTTP collector's base URL (`/v1/traces` is appended unless the path already ends in it). */
const otlpEndpoint = z.url({ protocol: /^https?$/, message: 'must be the http:// or https:// URL of an OTLP/HTTP collector, e.g. http://collector:4318' }).refine(
  // A collector's credentials belong in a header the operator controls, not in a URL the logs may print.
  (url) => new URL(url).username === '' && new URL(url).password === '',
  'the collector URL must not carry credentials',
);

/**
 * The `telemetry` section. Tracing is off until `otlp_endpoint` is set: without it no OpenTelemetry code is
 * loaded and no exchange pays for spans. User ids stay out of spans unless `per_user` says otherwise: a
 * trace backend is often read by more people than the recordings.
 */
export const telemetrySettingsSchema = z
  .strictObject({
    otlp_endpoint: otlpEndpoint.optional(),
    service_name: z.string().min(1).max(256).default('sluice'),
    /** Share of the traces the gateway starts that are kept; a caller's sampled flag decides for the traces it started. */
    sample_ratio: z.number().min(0).max(1).default(1),
    /** Put the caller's `sub` on exchange spans as `enduser.id`. */
    per_user: z.boolean().default(false),
  })
  .default({ service_name: 'sluice', sample_ratio: 1, per_user: false });

export type TelemetrySettings = z.output<typeof telemetrySettingsSchema>;

/** The URL spans are posted to. */
export function tracesUrl(endpoint: string): string {
  const url = new URL(endpoint);
  if (!url.pathname.endsWith('/v1/traces')) url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/traces`;
  return url.toString();
}
