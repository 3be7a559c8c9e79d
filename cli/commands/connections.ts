import { z } from 'zod';
import { ApiClient } from '../api-client.js';
import { getAccessToken } from '../auth/access-token.js';
import type { RegisterCommand } from '../context.js';
import { printResult } from '../output.js';

const connectionsSchema = z.object({
  connections: z.array(
    z.object({
      name: z.string(),
      type: z.string(),
      description: z.string().nullable(),
      labels: z.record(z.string(), z.string()),
      applies: z.object({ masking: z.array(z.string()) }).passthrough(),
    }),
  ),
});

export const registerConnections: RegisterCommand = (program, ctx) => {
  program
    .command('connections')
    .summary('list the connections you may use')
    .description('List the connections the gateway lets you use, with their type and what applies to them (masking, recording).')
    .option('--json', 'print JSON', false)
    .action(async (opts: { json: boolean }) => {
      const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
      const api = new ApiClient({ gateway: access.gateway, token: access.token });
      const data = await api.request({ path: '/v1/connections', schema: connectionsSchema });
      printResult(ctx.out, opts.json, data, () => {
        if (data.connections.length === 0) return 'No connections are open to you on this gateway.';
        const rows = data.connections.map((c) => [c.name, c.type, c.applies.masking.join(',') || '-', c.description ?? '']);
        const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), ['NAME', 'TYPE', 'MASKING'][i]!.length));
        const line = (r: string[]) => r.map((v, i) => (i < 3 ? v.padEnd(widths[i]!) : v)).join('  ').trimEnd();
        return [line(['NAME', 'TYPE', 'MASKING', 'DESCRIPTION']), ...rows.map(line)].join('\n');
      });
    });
};
