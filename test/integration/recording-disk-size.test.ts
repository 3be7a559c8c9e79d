/**
 * What a recording costs on disk, per byte of body the caller sent and got, through the real gateway: small
 * exchanges (the size of a short chat completion) and streamed answers, with `storage.compression` at its
 * default and at `none`. Counted from the sealed session files, every record included.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import { FILE_MAGIC, HEADER_PREFIX } from '../../server/recording/record-format.js';
import { gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';

/** A non-streamed chat completion of a few hundred bytes, shaped as OpenAI's. */
const ANSWER = JSON.stringify({
  id: 'chatcmpl-3f2a9c',
  object: 'chat.completion',
  created: 1796300000,
  model: 'small-model',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Here is a short answer to your question, in one sentence.', refusal: null }, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 12, completion_tokens: 14, total_tokens: 26 },
});

const gateways = gatewayFixture({ model: { chunks: 60, chunkDelayMs: 0 } });

async function smallUpstream(): Promise<string> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(ANSWER) });
      res.end(ANSWER);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** Bodies each way, summed over the calls; and the sealed session files' bytes, by connection. */
async function measure(compression: 'deflate' | 'none' | undefined): Promise<{ small: number; streamed: number; headers: Record<string, unknown>[] }> {
  const small = await smallUpstream();
  const gw: TestGateway = await gateways.start({
    connections: ({ model }) => [
      { name: 'small', type: 'http', upstream: small, allow_groups: ['ml-eng'], record: { request_body: 'raw', response_body: 'raw' } },
      modelConnection(model, { name: 'stream', record: { request_body: 'raw', response_body: 'raw' } }),
    ],
    config: { storage: compression === undefined ? {} : { compression } },
  });
  const token = await gw.token('alice');
  const call = async (connection: string, body: string): Promise<number> => {
    const res = await fetch(`${gw.url}/v1/proxy/${connection}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
    expect(res.status).toBe(200);
    return Buffer.byteLength(body) + Buffer.byteLength(await res.text());
  };
  let smallBodies = 0;
  for (let i = 0; i < 20; i++) smallBodies += await call('small', JSON.stringify({ model: 'small-model', messages: [{ role: 'user', content: `Question number ${i}: what is the answer?` }] }));
  let streamedBodies = 0;
  for (let i = 0; i < 3; i++) streamedBodies += await call('stream', JSON.stringify({ model: 'demo-echo', stream: true, messages: [{ role: 'user', content: `Tell me a long story, take ${i}` }] }));
  await gw.stopApp(); // seals both sessions
  const sessions = await gw.sessions();
  const bytesOf = async (connection: string): Promise<{ bytes: number; header: Record<string, unknown> }> => {
    const file = await readFile(join(gw.storageDir, sessions.find((s) => s.connection === connection)!.file));
    expect(file[FILE_MAGIC.length]).toBe(3);
    return { bytes: file.length, header: JSON.parse(file.subarray(HEADER_PREFIX, HEADER_PREFIX + file.readUInt32BE(HEADER_PREFIX - 4)).toString('utf8')) as Record<string, unknown> };
  };
  const [s, t] = [await bytesOf('small'), await bytesOf('stream')];
  return { small: s.bytes / smallBodies, streamed: t.bytes / streamedBodies, headers: [s.header, t.header] };
}

describe('bytes on disk per body byte', () => {
  it('stays at most 1.5 for small exchanges and 1.1 for streamed answers, bodies kept raw, whole sessions counted', async () => {
    const ratio = await measure(undefined);
    expect(ratio.headers.map((h) => h.compression)).toEqual(['deflate', 'deflate']);
    expect(ratio.small).toBeLessThanOrEqual(1.5);
    expect(ratio.streamed).toBeLessThanOrEqual(1.1);
  });

  it('with storage.compression none, stores records as they are: sizes that follow lengths alone, at about four times the bytes', async () => {
    const ratio = await measure('none');
    expect(ratio.headers.map((h) => h.compression)).toEqual(['none', 'none']);
    expect(ratio.small).toBeGreaterThan(3);
    expect(ratio.streamed).toBeGreaterThan(1);
  });

  it('takes storage.compression deflate (the default) or none, and refuses anything else by its path', () => {
    const identity = 'identity: { issuer: https://idp.example.com, audience: sluice, cli_client_id: sluice-cli }\n';
    expect(parseConfigText(identity).storage.compression).toBe('deflate');
    expect(parseConfigText(`${identity}storage: { compression: none }\n`).storage.compression).toBe('none');
    expect(() => parseConfigText(`${identity}storage: { compression: gzip }\n`)).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID', message: expect.stringContaining('storage.compression') }));
  });
});
