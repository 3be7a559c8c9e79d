import { z } from 'zod';
import { usageReportSchema, type UsageReportJson } from '../../shared/usage-api.js';
import type { RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { printResult } from '../output.js';
import { sessionClients, timeFlag } from './sessions.js';

const usageFlags = z.object({
  user: z.string().min(1).optional(),
  connection: z.string().min(1).optional(),
  since: z.string().min(1).optional(),
  by: z.enum(['model', 'user', 'connection']).default('model'),
  json: z.boolean().default(false),
});

const COLUMNS = ['SESSIONS', 'REQUESTS', 'INPUT TOKENS', 'OUTPUT TOKENS'] as const;

/** The report as a plain table, one group a line and a total; exact numbers (a bill is read to the token), right-aligned. */
export function renderUsage(report: UsageReportJson): string {
  const scope = [report.user === null ? 'all users' : `user ${report.user}`, report.connection === null ? null : `connection ${report.connection}`, report.since === null ? null : `since ${report.since}`]
    .filter((s) => s !== null)
    .join(', ');
  if (report.rows.length === 0) return `No usage recorded (${scope}).`;
  const head = [report.by.toUpperCase(), ...COLUMNS];
  const rows = report.rows.map((r) => [r.key, String(r.sessions), String(r.requests), String(r.input_tokens), String(r.output_tokens)]);
  const total = ['total', '', String(report.total.requests), String(report.total.input_tokens), String(report.total.output_tokens)];
  const all = [head, ...rows, total];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [`Usage by ${report.by} (${scope})`, line(head), ...rows.map(line), line(total)].join('\n');
}

/** `sluice usage`: spend (requests, input/output tokens) from the gateway's session index. */
export const registerUsage: RegisterCommand = (program, ctx) => {
  program
    .command('usage')
    .description("requests and input/output tokens from the session index, grouped by model, user or connection (your own unless you are an auditor or admin)")
    .option('--user <sub>', "only this user's sessions (auditors and admins)")
    .option('--connection <name>', 'only this connection')
    .option('--since <time>', 'sessions started at or after: a duration ago (7d, 12h), a date (2026-11-01) or an ISO 8601 time')
    .option('--by <group>', 'model, user or connection', 'model')
    .option('--json', 'print JSON', false)
    .action(async (raw: Record<string, unknown>) => {
      const parsed = usageFlags.safeParse(raw);
      if (!parsed.success) throw usageError(parsed.error);
      const f = parsed.data;
      const { api } = await sessionClients(ctx);
      const report = await api.request({
        path: '/v1/usage',
        query: { user: f.user, connection: f.connection, since: f.since === undefined ? undefined : timeFlag(f.since), by: f.by },
        schema: usageReportSchema,
      });
      printResult(ctx.out, f.json, report, () => renderUsage(report));
    });
};
