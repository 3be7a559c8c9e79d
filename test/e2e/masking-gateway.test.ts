import OpenAI from 'openai';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PII, type RunningModelServer } from '../../server/demo/model-server.js';
import { gatewayFixture, modelConnection, UPSTREAM_API_KEY, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();
let gw: TestGateway;
let model: RunningModelServer;
let gateway: string;

const PII = Object.values(DEMO_PII);

beforeAll(async () => {
  gw = await gateways.start({
    model: { chunks: 60, chunkDelayMs: 2 },
    connections: ({ model }) => [modelConnection(model, { masking: ['pii'] })],
    config: { roles: { auditor: ['security'] }, masking_profiles: { pii: { detectors: ['email', 'phone', 'credit_card', 'ip_address'] } } },
  });
  ({ model, url: gateway } = gw);
});

function withoutPii(text: string): void {
  for (const value of PII) expect(text).not.toContain(value);
}

describe('masking through the gateway', () => {
  it('masks answers the openai SDK receives, streamed and not, and keeps masked bytes in the recording', async () => {
    const alice = await gw.token('alice');
    const client = new OpenAI({ baseURL: `${gateway}/v1/proxy/llm/v1`, apiKey: alice, maxRetries: 0 });

    const completion = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'customer record for bob@corp.example' }] });
    const whole = completion.choices[0]!.message.content!;
    withoutPii(whole);
    expect(whole).toContain('[EMAIL]');
    expect(whole).toContain('[CREDIT_CARD]');

    const stream = await client.chat.completions.create({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'customer record' }] });
    const deltas: string[] = [];
    for await (const chunk of stream) deltas.push(chunk.choices[0]?.delta?.content ?? '');
    expect(deltas.filter(Boolean).length).toBeGreaterThan(10);
    withoutPii(deltas.join(''));
    expect(deltas.join('')).toContain('[EMAIL]');
    // The model really sends the values: masking, not a different answer, is why the caller never saw them.
    const direct = await fetch(`${model.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${UPSTREAM_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'customer record' }] }),
    });
    expect(await direct.text()).toContain(DEMO_PII.email);

    const carol = await gw.token('carol');
    const auth = { authorization: `Bearer ${carol}` };
    const list = (await (await fetch(`${gateway}/v1/sessions?user=alice`, { headers: auth })).json()) as { sessions: { id: string; counters: { masked: number } }[] };
    expect(list.sessions).toHaveLength(1);
    const ndjson = await (await fetch(`${gateway}/v1/sessions/${list.sessions[0]!.id}/events`, { headers: auth })).text();
    const events = ndjson.trim().split('\n').map((l) => JSON.parse(l) as { type: string; payload?: string; body?: { capture: string }; findings?: { entity: string; count: number }[] });
    // The request body is kept as masking left it: the prompt's address is gone, its shape is not.
    const request = events.find((e) => e.type === 'exchange.request')!;
    expect(request.body?.capture).toBe('masked');
    const recordedPrompt = Buffer.from(request.payload!, 'base64').toString('utf8');
    expect(recordedPrompt).not.toContain('bob@corp.example');
    expect(JSON.parse(recordedPrompt).messages[0].content).toBe('customer record for [EMAIL]');
    const recorded = events.filter((e) => e.payload !== undefined).map((e) => Buffer.from(e.payload!, 'base64').toString('utf8')).join('');
    withoutPii(recorded);
    expect(recorded).toContain('[EMAIL]');
    const summaries = events.filter((e) => e.type === 'masking.summary');
    expect(summaries.length).toBe(2);
    expect(summaries[0]!.findings!.map((f) => f.entity)).toEqual(expect.arrayContaining(['email', 'credit_card']));
  });
});
