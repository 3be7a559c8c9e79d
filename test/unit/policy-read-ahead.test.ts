import { once } from 'node:events';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { describe, expect, it, onTestFinished } from 'vitest';
import { readBodyForPolicy, type ReadAheadBody } from '../../server/policy/body-read-ahead.js';

/** Sends `body` to a real server that reads ahead for policy, then reads the whole body as a forwarder would. */
async function roundtrip(body: Buffer, options: { chunked: boolean; limit: number; contentType?: string; contentEncoding?: string }) {
  let seen: ReadAheadBody | undefined;
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
  if (options.contentEncoding) headers['content-encoding'] = options.contentEncoding;
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
    expect(sized.policy).toEqual({ json: null, size: large.length, problem: { kind: 'too-large', reason: 'it is larger than the 100000 bytes policy reads ahead' } });
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

  it.each([false, true])('reads UTF-16 and gzip bodies as the upstream would, and forwards them as sent (chunked: %s)', async (chunked) => {
    const utf16 = Buffer.from(JSON.stringify({ model: 'gpt-5', max_tokens: 9000 }), 'utf16le');
    const wide = await roundtrip(utf16, { chunked, limit: 1000 });
    expect(wide.policy).toEqual({ json: { model: 'gpt-5', max_tokens: 9000 }, size: utf16.length });
    expect(wide.forwarded.equals(utf16)).toBe(true);

    const zipped = gzipSync(small);
    const gz = await roundtrip(zipped, { chunked, limit: 100_000, contentEncoding: 'gzip' });
    expect(gz.policy.json).toMatchObject({ model: 'gpt-5', max_tokens: 9000 });
    expect(gz.policy.size).toBe(zipped.length);
    expect(gz.forwarded.equals(zipped)).toBe(true);
    // Decompressed past the limit: a problem, never "no body".
    const bomb = await roundtrip(gzipSync(large), { chunked, limit: 100_000, contentEncoding: 'gzip' });
    expect(bomb.policy.problem).toEqual({ kind: 'too-large', reason: 'decompressed, it is larger than the 100000 bytes policy reads ahead' });
  });

  it('reports a body shaped like JSON that does not parse as unreadable, not as no body', async () => {
    const broken = await roundtrip(Buffer.from('{"model":"gpt-5",'), { chunked: false, limit: 1000 });
    expect(broken.policy).toMatchObject({ json: null, size: 17, problem: { kind: 'unreadable' } });
  });
});
