/**
 * The demo model's OpenAI APIs — Responses (streamed and not), embeddings and the model list — driven by
 * the `openai` SDK through the real gateway, on the demo's own `llm` connection and `pii` masking profile
 * (taken from `demoConfig`, so the test follows the demo): the SDK parses every answer, and the fake PII
 * the model sends comes back masked.
 */
import OpenAI, { AuthenticationError } from 'openai';
import type { ResponseStreamEvent } from 'openai/resources/responses/responses';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEMO_UPSTREAM_KEY } from '../../server/demo/demo-config.js';
import { embeddingFloats, embeddingOf } from '../../server/demo/embedding-vectors.js';
import { DEMO_PII } from '../../server/demo/model-server.js';
import { RESPONSES_STREAM_EVENT_TYPES } from '../fixtures/responses-stream.js';
import { demoGatewayOptions, gatewayFixture, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();

const PII = Object.values(DEMO_PII);
const QUESTION = 'what do you know about the customer?';

let gw: TestGateway;
let client: OpenAI;
/** The chat answer to QUESTION as the gateway lets it out: what every other API's answer must read. */
let maskedChat: string;

beforeAll(async () => {
  gw = await gateways.start(demoGatewayOptions({ chunks: 40 }));
  client = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: await gw.token('alice'), maxRetries: 0 });
  const chat = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: QUESTION }] });
  maskedChat = chat.choices[0]!.message.content!;
});

function expectMasked(text: string): void {
  for (const value of PII) expect(text).not.toContain(value);
  expect(text).toContain('[EMAIL]');
  expect(text).toContain('[CREDIT_CARD]');
}

describe('the demo model through the gateway, with the openai SDK', () => {
  it('the demo connection is the one the test runs on, and the model really sends the PII', async () => {
    expect(gw.config.connections.find((c) => c.name === 'llm')?.masking).toEqual(['pii']);
    expectMasked(maskedChat);
    expect(maskedChat).toContain(QUESTION);
    const direct = new OpenAI({ baseURL: `${gw.model.url}/v1`, apiKey: DEMO_UPSTREAM_KEY, maxRetries: 0 });
    const raw = await direct.responses.create({ model: 'demo', input: QUESTION });
    for (const value of PII) expect(raw.output_text).toContain(value);
  });

  it('answers responses.create (not streamed) with a Response the SDK reads, masked', async () => {
    const response = await client.responses.create({
      model: 'demo',
      instructions: 'Answer briefly.',
      input: [{ role: 'user', content: [{ type: 'input_text', text: QUESTION }] }],
    });
    expect(response.object).toBe('response');
    expect(response.status).toBe('completed');
    expect(response.instructions).toBe('Answer briefly.');
    expect(response.output).toHaveLength(1);
    expect(response.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed' });
    // output_text is the SDK's own join of the output's text parts: it found them where OpenAI puts them.
    expect(response.output_text).toBe(maskedChat);
    expect(response.usage).toMatchObject({ input_tokens: expect.any(Number), output_tokens: expect.any(Number) });
    expect(response.usage!.total_tokens).toBe(response.usage!.input_tokens + response.usage!.output_tokens);
    for (const value of PII) expect(JSON.stringify(response)).not.toContain(value);
    // The caller's key never reached the model: the gateway sent the demo's upstream key.
    expect(gw.model.requests.at(-1)!.headers.authorization).toBe(`Bearer ${DEMO_UPSTREAM_KEY}`);
  });

  it('streams responses.create as OpenAI does, every event masked', async () => {
    const stream = await client.responses.create({ model: 'demo', input: QUESTION, stream: true });
    const events: ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);

    const types = events.map((e) => e.type).filter((t, i, all) => t !== 'response.output_text.delta' || all[i - 1] !== t);
    expect(types).toEqual(RESPONSES_STREAM_EVENT_TYPES);
    const deltas = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : []));
    expect(deltas.length).toBeGreaterThan(10);
    expect(deltas.join('')).toBe(maskedChat);

    // The whole text is repeated four times after the deltas; each copy is masked the same way.
    const byType = <T extends ResponseStreamEvent['type']>(type: T) => events.find((e) => e.type === type) as Extract<ResponseStreamEvent, { type: T }>;
    expect(byType('response.output_text.done').text).toBe(maskedChat);
    expect(byType('response.content_part.done').part).toMatchObject({ type: 'output_text', text: maskedChat });
    expect(byType('response.output_item.done').item).toMatchObject({ type: 'message', content: [{ type: 'output_text', text: maskedChat }] });
    const completed = byType('response.completed').response;
    expect(completed.status).toBe('completed');
    expect(completed.output).toMatchObject([{ type: 'message', content: [{ type: 'output_text', text: maskedChat }] }]);
    expect(completed.usage!.output_tokens).toBeGreaterThan(0);
    for (const value of PII) expect(JSON.stringify(events)).not.toContain(value);
  });

  it("answers responses.stream: the SDK's accumulator checks the event order and builds the final Response", async () => {
    const stream = client.responses.stream({ model: 'demo', input: QUESTION });
    let snapshot = '';
    stream.on('response.output_text.delta', (e) => {
      snapshot = e.snapshot;
    });
    const final = await stream.finalResponse();
    expect(final.output_text).toBe(maskedChat);
    expect(snapshot).toBe(maskedChat);
    expect(final.usage!.total_tokens).toBeGreaterThan(0);
  });

  it('answers embeddings.create in base64 (the SDK default) and as floats, the vectors unchanged by masking', async () => {
    const inputs = [`customer ${DEMO_PII.email}`, 'card 4111 1111 1111 1111'];
    const base64 = await client.embeddings.create({ model: 'demo-embed', input: inputs, dimensions: 512 });
    const sentBase64 = JSON.parse(gw.model.requests.at(-1)!.body) as { encoding_format: string; input: string[] };
    expect(sentBase64.encoding_format).toBe('base64');
    const floats = await client.embeddings.create({ model: 'demo-embed', input: inputs, dimensions: 512, encoding_format: 'float' });
    const sentFloats = JSON.parse(gw.model.requests.at(-1)!.body) as { input: string[] };

    for (const answer of [base64, floats]) {
      expect(answer.object).toBe('list');
      expect(answer.model).toBe('demo-embed');
      expect(answer.usage.prompt_tokens).toBeGreaterThan(0);
      expect(answer.data.map((d) => d.index)).toEqual([0, 1]);
      for (const d of answer.data) expect(d.object).toBe('embedding');
    }
    // Number for number what the model computed for the input it was sent: no digit was taken for PII.
    base64.data.forEach((d, i) => expect(Array.from(d.embedding)).toEqual(embeddingOf(sentBase64.input[i]!, 512)));
    floats.data.forEach((d, i) => expect(d.embedding).toEqual(embeddingFloats(embeddingOf(sentFloats.input[i]!, 512))));
    // Both encodings carry the same float32 values.
    expect(floats.data[0]!.embedding.map(Math.fround)).toEqual(Array.from(base64.data[0]!.embedding));
  });

  it('answers models.list and models.retrieve', async () => {
    const page = await client.models.list();
    expect(page.data).toEqual([{ id: 'demo-echo', object: 'model', created: expect.any(Number), owned_by: 'sluice-demo' }]);
    const one = await client.models.retrieve('demo-echo');
    expect(one.id).toBe('demo-echo');
    await expect(client.models.retrieve('gpt-unknown')).rejects.toMatchObject({ status: 404, code: 'model_not_found' });
  });

  it('refuses every API without the upstream key, as the rest of the demo model does', async () => {
    for (const apiKey of ['sk-wrong', await gw.token('alice')]) {
      const direct = new OpenAI({ baseURL: `${gw.model.url}/v1`, apiKey, maxRetries: 0 });
      await expect(direct.responses.create({ model: 'demo', input: 'hi' })).rejects.toBeInstanceOf(AuthenticationError);
      await expect(direct.responses.create({ model: 'demo', input: 'hi', stream: true })).rejects.toBeInstanceOf(AuthenticationError);
      await expect(direct.embeddings.create({ model: 'demo', input: 'hi' })).rejects.toBeInstanceOf(AuthenticationError);
      await expect(direct.models.list()).rejects.toBeInstanceOf(AuthenticationError);
    }
  });

  it('answers malformed Responses and embeddings requests with OpenAI-style 400s', async () => {
    await expect(client.responses.create({ model: 'demo' } as never)).rejects.toMatchObject({ status: 400, code: 'invalid_input' });
    await expect(client.embeddings.create({ model: 'demo', input: [] })).rejects.toMatchObject({ status: 400, code: 'invalid_input' });
    await expect(client.embeddings.create({ model: 'demo', input: 'x', encoding_format: 'int8' as never })).rejects.toMatchObject({
      status: 400,
      code: 'invalid_encoding_format',
    });
  });
});
