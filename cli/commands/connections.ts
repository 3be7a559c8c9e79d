import { connectionListSchema, type ConnectionJson, type ConnectionRuleJson } from '../../shared/connections-api.js';
import { ApiClient } from '../api-client.js';
import { getAccessToken } from '../auth/access-token.js';
import type { RegisterCommand } from '../context.js';
import { printResult } from '../output.js';
import { formatBytes } from '../tunnel/tunnel-status.js';

/** The table of connections: one line each. */
function connectionTable(connections: readonly ConnectionJson[]): string {
  const rows = connections.map((c) => [c.name, c.type, c.applies.masking.join(',') || '-', c.description ?? '']);
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), ['NAME', 'TYPE', 'MASKING'][i]!.length));
  const line = (r: string[]) => r.map((v, i) => (i < 3 ? v.padEnd(widths[i]!) : v)).join('  ').trimEnd();
  return [line(['NAME', 'TYPE', 'MASKING', 'DESCRIPTION']), ...rows.map(line)].join('\n');
}

/** The limits of a connection in one line. */
function limitsLine(c: ConnectionJson): string {
  const parts: string[] = [];
  if (c.applies.max_body !== null) parts.push(`request bodies up to ${formatBytes(c.applies.max_body)}`);
  if (c.applies.policy_read_ahead !== null) parts.push(`rules read up to ${formatBytes(c.applies.policy_read_ahead)} of a body`);
  parts.push(c.applies.requires_grant ? `needs an access grant (sluice access request ${c.name})` : 'no access grant needed');
  if (c.applies.policy_default === 'deny') parts.push('requests no rule allows are refused');
  return `${c.name}: ${parts.join('; ')}`;
}

/** One rule: what it does and to which requests, then what it says and (for admins) its condition. */
function ruleLines(r: ConnectionRuleJson, nameWidth: number): string[] {
  const scope = r.matches === 'always' ? 'every request' : 'some requests';
  const review =
    r.action === 'review'
      ? ` · reviewers ${r.reviewers?.join(', ') ?? '-'}${(r.min_approvals ?? 1) > 1 ? ` (${r.min_approvals} approvals)` : ''} · held up to ${r.timeout ?? '-'}`
      : '';
  const lines = [`  ${(r.action === 'review' ? 'holds' : 'denies').padEnd(6)}  ${r.name.padEnd(nameWidth)}  ${scope}${review}`];
  const indent = ' '.repeat(10);
  if (r.description !== null) lines.push(`${indent}${r.description}`);
  if (r.message !== null) lines.push(`${indent}${r.action === 'deny' ? 'you read' : 'reviewers read'}: ${r.message}`);
  if (r.when !== undefined) lines.push(`${indent}when: ${r.when}`);
  return lines;
}

/** What applies on each connection: its limits and the rules that may hold or refuse the caller's requests. */
function connectionDetails(c: ConnectionJson): string {
  const lines = [limitsLine(c)];
  if (c.rules.length === 0) lines.push('  no rule holds or refuses your requests here');
  const width = Math.max(0, ...c.rules.map((r) => r.name.length));
  for (const r of c.rules) lines.push(...ruleLines(r, width));
  return lines.join('\n');
}

export const registerConnections: RegisterCommand = (program, ctx) => {
  program
    .command('connections')
    .summary('list the connections you may use')
    .description(
      'List the connections the gateway lets you use, with their type and what applies to them (masking, ' +
        'body limits, access grants), and the policy rules that may hold your requests for review or refuse ' +
        'them, with what they say (admins also see each rule\'s condition).',
    )
    .option('--json', 'print JSON', false)
    .action(async (opts: { json: boolean }) => {
      const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
      const api = new ApiClient({ gateway: access.gateway, token: access.token });
      const data = await api.request({ path: '/v1/connections', schema: connectionListSchema });
      printResult(ctx.out, opts.json, data, () => {
        if (data.connections.length === 0) return 'No connections are open to you on this gateway.';
        return [connectionTable(data.connections), ...data.connections.map(connectionDetails)].join('\n\n');
      });
    });
};
