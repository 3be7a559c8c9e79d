import { once } from 'node:events';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { readBodyForPolicy } from '../../server/policy/body-read-ahead.js';
import type { PolicyBody } from '../../server/policy/policy-input.js';

/** Sends `body` to a real server that reads ahead for policy, then reads the whole body as a forwarder would. */
async function roundtrip(body: Buffer, options: { chunked: boolean; limit: number; contentType?: string }) {
  let seen: PolicyBody | undefined;
  const server = createServer(async (req: IncomingMessage, res) => {
    seen = await readBodyForPolicy(req, { limit: options.limit });
    const parts: Buffer[] = [];
    for await (const chunk of req) parts.push(chunk as Buffer);
    res.end(Buffer.concat(parts));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => void server.close());
  const headers: Record<string, string | number> = options.chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': body.length };
  if (options.contentType) headers['content-type'] = options.contentType;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const r = request({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', method: 'POST', headers }, resolve);
    r.on('error', reject);
    // Written in pieces so the server sees several chunks.
    for (let i = 0; i < body.length; i += 7000) r.write(body.subarray(i, i + 7000));
    r.end();
  });
  const echoed: Buffer[] = [];
  for await (const chunk of res) echoed.push(chunk as Buffer);
  return { policy: seen!, forwarded: Buffer.concat(echoed) };
}

describe('reading the body ahead for policy', () => {
  const small = Buffer.from(JSON.stringify({ model: 'gpt-5', max_tokens: 9000, pad: 'x'.repeat(50_000) }));
  const large = Buffer.from(JSON.stringify({ model: 'gpt-5', pad: 'x'.repeat(300_000) }));

  it.each([false, true])('parses a body within the limit and still forwards every byte (chunked: %s)', async (chunked) => {
    const { policy, forwarded } = await roundtrip(small, { chunked, limit: 100_000 });
    expect(policy.json).toMatchObject({ model: 'gpt-5', max_tokens: 9000 });
    expect(policy.size).toBe(small.length);
    expect(forwarded.equals(small)).toBe(true);
  });

  it('does not parse a body over the limit, reports its size, and forwards it whole', async () => {
    const sized = await roundtrip(large, { chunked: false, limit: 100_000 });
    expect(sized.policy).toEqual({ json: null, size: large.length });
    expect(sized.forwarded.equals(large)).toBe(true);
    const chunked = await roundtrip(large, { chunked: true, limit: 100_000 });
    expect(chunked.policy.json).toBeNull();
    // A lower bound above the limit: enough for `request.size > limit` rules.
    expect(chunked.policy.size).toBeGreaterThan(100_000);
    expect(chunked.forwarded.equals(large)).toBe(true);
  });

  it('parses JSON whatever the Content-Type says, and gives null for what is not JSON', async () => {
    const labelled = await roundtrip(Buffer.from('{"model":"gpt-5"}'), { chunked: false, limit: 1000, contentType: 'text/plain' });
    expect(labelled.policy.json).toEqual({ model: 'gpt-5' });
    const text = await roundtrip(Buffer.from('model=gpt-5'), { chunked: false, limit: 1000 });
    expect(text.policy).toEqual({ json: null, size: 11 });
    expect(text.forwarded.toString()).toBe('model=gpt-5');
  });
});
