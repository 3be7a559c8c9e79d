import { createServer, type Server } from 'node:http';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { spawnCli } from '../helpers/cli-process.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';

const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';
const ARGS = JSON.stringify({ email: EMAIL, card: CARD, note: 'customer lookup' });

/** An upstream that answers with a tool call whose arguments carry PII, split across SSE chunks mid-value. */
function toolCallUpstream(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
      const base = { id: 'chatcmpl-t', created: 1, model: 'tool-model' };
      if (!stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            ...base,
            object: 'chat.completion',
            choices: [
              {
                index: 0,
                finish_reason: 'tool_calls',
                message: { role: 'assistant', content: `Writing to ${EMAIL}`, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: ARGS } }] },
              },
            ],
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta: object, finish: string | null = null) =>
        `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      const pieces = [ARGS.slice(0, 14), ARGS.slice(14, 30), ARGS.slice(30, 47), ARGS.slice(47)];
      const events = [
        chunk({ role: 'assistant', content: '' }),
        chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '' } }] }),
        ...pieces.map((p) => chunk({ tool_calls: [{ index: 0, function: { arguments: p } }] })),
        chunk({ content: 'Contact jane.doe@exa' }),
        chunk({ content: 'mple.com soon' }),
        chunk({}, 'tool_calls'),
        'data: [DONE]\n\n',
      ];
      let i = 0;
      const next = () => {
        if (i === events.length) {
          res.end();
          return;
        }
        res.write(events[i++]);
        setTimeout(next, 5);
      };
      next();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server })));
}

const gateways = gatewayFixture();
let gw: TestGateway;
let upstream: { url: string; server: Server };
let gateway: string;

beforeAll(async () => {
  upstream = await toolCallUpstream();
  gw = await gateways.start({
    connections: () => [{ name: 'tools', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], masking: ['pii'] }],
    config: { roles: { auditor: ['security'] }, masking_profiles: { pii: { detectors: ['email', 'credit_card'] } } },
  });
  gateway = gw.url;
});

afterAll(async () => {
  await gw?.close();
  await new Promise((r) => upstream?.server.close(r));
});

describe('masking through the tunnel', () => {
  it('masks content and tool-call arguments for the openai SDK, and nothing unmasked is recorded', async () => {
    const alice = await gw.token('alice');
    const cli = spawnCli(['connect', 'tools', '--json'], { env: { SLUICE_TOKEN: alice, SLUICE_GATEWAY: gateway } });
    onTestFinished(() => cli.kill('SIGKILL'));
    await cli.waitForOutput(/"event":"ready"/);
    const { openai_base_url: baseURL, local_token: apiKey } = JSON.parse(cli.stdout().split('\n')[0]!) as { openai_base_url: string; local_token: string };
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

    const whole = await client.chat.completions.create({ model: 'tool-model', messages: [{ role: 'user', content: 'look up' }] });
    const message = whole.choices[0]!.message;
    expect(message.content).toBe('Writing to [EMAIL]');
    const wholeArgs = JSON.parse(message.tool_calls![0]!.type === 'function' ? (message.tool_calls![0] as { function: { arguments: string } }).function.arguments : '{}');
    expect(wholeArgs).toEqual({ email: '[EMAIL]', card: '[CREDIT_CARD]', note: 'customer lookup' });

    const stream = await client.chat.completions.create({ model: 'tool-model', stream: true, messages: [{ role: 'user', content: 'look up' }] });
    let args = '';
    let content = '';
    const received: string[] = [];
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta;
      const piece = delta?.tool_calls?.[0]?.function?.arguments ?? '';
      args += piece;
      content += delta?.content ?? '';
      received.push(piece, delta?.content ?? '');
    }
    expect(JSON.parse(args)).toEqual({ email: '[EMAIL]', card: '[CREDIT_CARD]', note: 'customer lookup' });
    expect(content).toBe('Contact [EMAIL] soon');
    // No delta the client received carries a fragment of a value.
    for (const piece of received) for (const fragment of ['jane.d', 'oe@ex', '4111 1', '1111 1111']) expect(piece).not.toContain(fragment);

    cli.kill('SIGINT');
    await cli.exited;
    const carol = await gw.token('carol');
    const auth = { authorization: `Bearer ${carol}` };
    const list = (await (await fetch(`${gateway}/v1/sessions?connection=tools`, { headers: auth })).json()) as { sessions: { id: string }[] };
    expect(list.sessions.length).toBe(1);
    const ndjson = await (await fetch(`${gateway}/v1/sessions/${list.sessions[0]!.id}/events`, { headers: auth })).text();
    const decoded = ndjson
      .trim()
      .split('\n')
      .map((l) => {
        const e = JSON.parse(l) as { payload?: string };
        return `${l}\n${e.payload ? Buffer.from(e.payload, 'base64').toString('utf8') : ''}`;
      })
      .join('\n');
    expect(decoded).toContain('[EMAIL]');
    for (const value of [EMAIL, CARD, 'jane.d', '4111 1111']) expect(decoded).not.toContain(value);
  });
});
