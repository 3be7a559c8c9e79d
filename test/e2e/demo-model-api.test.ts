/**
 * A program run under `sluice run llm` that uses the `openai` SDK as it finds it configured
 * (OPENAI_BASE_URL, OPENAI_API_KEY) against the demo model's Responses, embeddings and models APIs,
 * through the tunnel, on the demo's `llm` connection and `pii` masking profile.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddingOf } from '../../server/demo/embedding-vectors.js';
import { DEMO_PII } from '../../server/demo/model-server.js';
import { RESPONSES_STREAM_EVENT_TYPES } from '../fixtures/responses-stream.js';
import { runCli } from '../helpers/cli-process.js';
import { demoGatewayOptions, gatewayFixture, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();

let gw: TestGateway;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-demo-api-'));
  gw = await gateways.start(demoGatewayOptions({ chunks: 30 }));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The program: it knows nothing of sluice, only the environment the OpenAI SDK reads. */
function script(openaiUrl: string): string {
  return `import OpenAI from ${JSON.stringify(openaiUrl)};
const client = new OpenAI({ maxRetries: 0 });
const whole = await client.responses.create({ model: 'demo', input: 'who is the customer?' });
const stream = await client.responses.create({ model: 'demo', input: 'who is the customer?', stream: true });
const types = [];
let deltas = '';
let completed;
for await (const event of stream) {
  types.push(event.type);
  if (event.type === 'response.output_text.delta') deltas += event.delta;
  if (event.type === 'response.completed') completed = event.response;
}
const embedding = await client.embeddings.create({ model: 'demo-embed', input: 'who is the customer?' });
const models = await client.models.list();
console.log(JSON.stringify({
  whole: whole.output_text,
  deltas,
  types: [...new Set(types)],
  completed: completed.output[0].content[0].text,
  embedding: Array.from(embedding.data[0].embedding),
  models: models.data.map((m) => m.id),
}));
`;
}

describe('the demo model under `sluice run`', () => {
  it('serves the openai SDK Responses (streamed and not), embeddings and models, the fake PII masked', async () => {
    const openaiUrl = pathToFileURL(createRequire(import.meta.url).resolve('openai')).href;
    const file = join(dir, 'program.mjs');
    await writeFile(file, script(openaiUrl));
    const env = { SLUICE_TOKEN: await gw.token('alice'), SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: join(dir, 'config') };
    const r = await runCli(['run', 'llm', '--', process.execPath, file], { env });
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      whole: string;
      deltas: string;
      types: string[];
      completed: string;
      embedding: number[];
      models: string[];
    };

    expect(out.whole).toContain('who is the customer?');
    for (const text of [out.whole, out.deltas, out.completed]) {
      for (const value of Object.values(DEMO_PII)) expect(text).not.toContain(value);
      expect(text).toContain('[EMAIL]');
      expect(text).toContain('[CREDIT_CARD]');
    }
    expect(out.deltas).toBe(out.whole);
    expect(out.completed).toBe(out.whole);
    expect(out.types).toEqual(RESPONSES_STREAM_EVENT_TYPES);
    expect(out.embedding).toEqual(embeddingOf('who is the customer?', 256));
    expect(out.models).toEqual(['demo-echo']);
  });
});
