import { z } from 'zod';

/** One group of `GET /v1/usage`: the sessions in it and what they spent. */
export const usageRowSchema = z.object({
  /** The model, user (`sub`) or connection, as `by` groups. */
  key: z.string(),
  sessions: z.number(),
  requests: z.number(),
  input_tokens: z.number(),
  output_tokens: z.number(),
});

/** `GET /v1/usage`: spend from the session index, grouped, with the filters that applied (the caller's own `user` for a non-auditor). */
export const usageReportSchema = z.object({
  by: z.enum(['model', 'user', 'connection']),
  user: z.string().nullable(),
  connection: z.string().nullable(),
  since: z.string().nullable(),
  rows: z.array(usageRowSchema),
  total: usageRowSchema.omit({ key: true, sessions: true }),
});

export type UsageReportJson = z.infer<typeof usageReportSchema>;
