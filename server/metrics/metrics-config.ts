import { z } from 'zod';

/**
 * The `metrics` section. Per-user labels are off by default: every user becomes a time series in the
 * scraper, which a large IdP turns into a cardinality problem the operator must choose.
 */
export const metricsSettingsSchema = z.strictObject({ per_user: z.boolean().default(false) }).default({ per_user: false });

export type MetricsSettings = z.output<typeof metricsSettingsSchema>;
