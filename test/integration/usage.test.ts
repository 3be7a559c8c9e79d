/**
 * `sluice usage` and `GET /v1/usage`: spend from the session index after real `openai` SDK traffic, grouped
 * by model, user and connection; a user sees only their own, an auditor everyone's.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { beforeAll, describe, expect, it } from 'vitest';
import type { UsageReportJson } from '../../shared/usage-api.js';
import { runCliInProcess, type InProcessResult } from '../helpers/cli-in-process.js';
import { closedSessions, gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();
let gw: TestGateway;
const tokens: Record<string, string> = {};
/** What the SDK reported, per user and model: what the report must add up to. */
const spent: Record<string, { requests: number; input: number; output: number }> = {};

function sluice(user: string, args: string[]): Promise<InProcessResult> {
  return runCliInProcess(args, { SLUICE_TOKEN: tokens[user]!, SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: join(tmpdir(), 'sluice-usage-none') });
}

async function chat(user: string, connection: string, model: string, stream = false): Promise<void> {
  const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/${connection}/v1`, apiKey: tokens[user]!, maxRetries: 0 });
  const messages = [{ role: 'user' as const, content: `How much does ${user} spend on ${model}?` }];
  let usage: OpenAI.CompletionUsage | undefined;
  if (stream) {
    for await (const chunk of await sdk.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } })) usage = chunk.usage ?? usage;
  } else {
    usage = (await sdk.chat.completions.create({ model, messages })).usage;
  }
  const key = `${user}/${model}`;
  const s = (spent[key] ??= { requests: 0, input: 0, output: 0 });
  s.requests++;
  s.input += usage!.prompt_tokens;
  s.output += usage!.completion_tokens;
}

const sum = (pick: (key: string) => boolean) =>
  Object.entries(spent)
    .filter(([k]) => pick(k))
    .reduce((t, [, s]) => ({ requests: t.requests + s.requests, input_tokens: t.input_tokens + s.input, output_tokens: t.output_tokens + s.output }), { requests: 0, input_tokens: 0, output_tokens: 0 });

beforeAll(async () => {
  gw = await gateways.start({
    connections: ({ model }) => [modelConnection(model), modelConnection(model, { name: 'llm2' })],
    config: { roles: { auditor: ['security'] }, storage: { proxy_session_idle: '300ms' } },
  });
  tokens.alice = await gw.token('alice');
  tokens.bob = await gw.token('bob', { groups: ['ml-eng'] });
  tokens.carol = await gw.token('carol');
  await chat('alice', 'llm', 'demo-small');
  await chat('alice', 'llm', 'demo-large', true);
  await chat('alice', 'llm', 'demo-small', true);
  await chat('alice', 'llm2', 'demo-small');
  await chat('bob', 'llm', 'demo-large');
  await closedSessions(gw.url, tokens.carol, 3);
});

describe('usage', () => {
  it('`sluice usage --by model --json`: an auditor sees everyone\'s spend per model, as the SDK was told it', async () => {
    const { code, stdout, stderr } = await sluice('carol', ['usage', '--by', 'model', '--json']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as UsageReportJson;
    expect(report).toMatchObject({ by: 'model', user: null, connection: null, since: null });
    const row = (model: string) => report.rows.find((r) => r.key === model);
    const small = sum((k) => k.endsWith('/demo-small'));
    const large = sum((k) => k.endsWith('/demo-large'));
    expect(row('demo-small')).toMatchObject({ requests: small.requests, input_tokens: small.input_tokens, output_tokens: small.output_tokens });
    expect(row('demo-large')).toMatchObject({ requests: large.requests, input_tokens: large.input_tokens, output_tokens: large.output_tokens });
    expect(report.total).toEqual(sum(() => true));
  });

  it('a user sees only their own spend; asking for another user\'s is refused (exit 4)', async () => {
    const mine = await sluice('alice', ['usage', '--by', 'connection', '--json']);
    expect(mine.code).toBe(0);
    const report = JSON.parse(mine.stdout) as UsageReportJson;
    expect(report.user).toBe('alice');
    expect(report.rows.map((r) => [r.key, r.sessions])).toEqual([
      ['llm', 1],
      ['llm2', 1],
    ]);
    expect(report.total).toMatchObject({ input_tokens: sum((k) => k.startsWith('alice/')).input_tokens });
    const other = await sluice('alice', ['usage', '--user', 'bob']);
    expect(other.code).toBe(4);
    expect(other.stderr).toMatch(/ERR_FORBIDDEN/);
  });

  it('prints a table by user, filtered by connection and --since; a start after every session leaves nothing', async () => {
    const { code, stdout } = await sluice('carol', ['usage', '--by', 'user', '--connection', 'llm', '--since', '7d']);
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^Usage by user \(all users, connection llm, since \d{4}-/);
    expect(lines[1]).toMatch(/^USER\s+SESSIONS\s+REQUESTS\s+INPUT TOKENS\s+OUTPUT TOKENS$/);
    const bob = sum((k) => k.startsWith('bob/'));
    expect(lines.find((l) => l.startsWith('bob'))!.split(/\s+/)).toEqual(['bob', '1', String(bob.requests), String(bob.input_tokens), String(bob.output_tokens)]);
    const later = await sluice('carol', ['usage', '--since', '2999-01-01']);
    expect(later.stdout.trim()).toBe('No usage recorded (all users, since 2999-01-01T00:00:00.000Z).');
  });

  it('GET /v1/usage refuses a malformed query with 400', async () => {
    const res = await fetch(`${gw.url}/v1/usage?by=day`, { headers: { authorization: `Bearer ${tokens.carol}` } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_BAD_REQUEST');
  });
});
