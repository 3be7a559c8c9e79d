import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PassThrough, Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, createBrotliCompress, createDeflate, createGzip, gunzipSync, brotliDecompressSync, inflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import type { HttpConnectionConfig } from '../../server/config/schema.js';
import { loadMaskingProfiles } from '../../server/masking/load-profiles.js';
import { createMaskingStage } from '../../server/masking/masking-stage.js';
import type { MaskingSummaryEntry } from '../../server/masking/masking-summary.js';
import type { Exchange } from '../../server/pipeline/exchange.js';
import { openAiChatStream, streamedText } from '../fixtures/masking/sse-streams.js';

const configPath = fileURLToPath(new URL('../fixtures/masking/sluice.yaml', import.meta.url));
const config = parseConfigText(readFileSync(configPath, 'utf8'));
const profiles = await loadMaskingProfiles(config, { baseDir: dirname(configPath) });

function exchange(masking: string[]): Exchange {
  const connection = { ...(config.connections[0] as HttpConnectionConfig), masking };
  return {
    id: 'req_test',
    principal: { sub: 'u', groups: ['ml-eng'], roles: [], expiresAt: 0, issuer: 'https://idp.example' },
    connection,
    session: { id: 'ses_test' },
    clientAddress: '127.0.0.1',
    via: 'proxy',
    method: 'POST',
    path: '/v1/chat/completions',
    headers: {},
    startedAt: Date.now(),
  };
}

/** Pushes `body` through the transform in pieces of `size` bytes on a plain Node stream; returns the output bytes. */
async function through(transform: Transform, body: Buffer, size: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) pieces.push(body.subarray(i, i + size));
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), transform, new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
  return Buffer.concat(out);
}

/** An upstream compressor that flushes per event, as streaming servers do. */
function compressEvents(encoding: 'gzip' | 'br' | 'deflate', sse: string): Promise<Buffer> {
  const z = encoding === 'gzip' ? createGzip() : encoding === 'deflate' ? createDeflate() : createBrotliCompress();
  const chunks: Buffer[] = [];
  z.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    z.on('end', () => resolve(Buffer.concat(chunks)));
    z.on('error', reject);
    for (const ev of sse.split(/(?<=\n\n)/)) {
      z.write(ev);
      z.flush(encoding === 'br' ? constants.BROTLI_OPERATION_FLUSH : constants.Z_SYNC_FLUSH);
    }
    z.end();
  });
}

const decompress = { gzip: gunzipSync, br: brotliDecompressSync, deflate: inflateSync } as const;
const SSE_HEAD = { 'content-type': 'text/event-stream; charset=utf-8' };
const sse = openAiChatStream(['Card 4111 1111 ', '1111 1111, mail ann@exa', 'mple.org, key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv.']);
const expectedText = 'Card [CREDIT_CARD], mail [EMAIL], key [SECRET].';

describe('masking on Node streams', () => {
  it('masks an SSE body split at arbitrary byte boundaries', async () => {
    const stage = createMaskingStage({ profiles });
    for (const size of [1, 3, 17, 4096]) {
      const t = stage.responseTransform(exchange(['pii']), { status: 200, headers: SSE_HEAD })!;
      const out = (await through(t, Buffer.from(sse), size)).toString('utf8');
      expect(streamedText(out)).toBe(expectedText);
      expect(out).toContain('data: [DONE]\n\n');
    }
  });

  it.each(['gzip', 'br', 'deflate'] as const)('decodes a %s body, masks it and re-encodes it for the current pipeline', async (encoding) => {
    const stage = createMaskingStage({ profiles });
    const body = await compressEvents(encoding, sse);
    const t = stage.responseTransform(exchange(['pii']), { status: 200, headers: { ...SSE_HEAD, 'content-encoding': encoding } })!;
    const out = await through(t, body, 11);
    const text = decompress[encoding](out).toString('utf8');
    expect(streamedText(text)).toBe(expectedText);
    expect(text).not.toContain('4111');
  });

  it('with responsePlan leaves the body decoded and drops Content-Encoding and Content-Length', async () => {
    const stage = createMaskingStage({ profiles });
    const json = JSON.stringify({ choices: [{ message: { content: 'ssn 123-45-6789' } }] });
    const head = { status: 200, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': '99', 'x-keep': '1' } };
    const plan = stage.responsePlan(exchange(['pii']), head)!;
    const out = await through(plan.transform, gzipSync(json), 5);
    expect(JSON.parse(out.toString('utf8'))).toEqual({ choices: [{ message: { content: 'ssn [SSN]' } }] });
    expect(plan.headers(head.headers)).toEqual({ 'content-type': 'application/json', 'x-keep': '1' });
    expect(plan.summary()).toEqual([{ entity: 'ssn', rule: 'detector:ssn', count: 1 }]);
  });

  it('releases the first masked delta before the upstream sends more (no buffering beyond the hold-back)', async () => {
    const stage = createMaskingStage({ profiles });
    const t = stage.responseTransform(exchange(['pii']), { status: 200, headers: { ...SSE_HEAD, 'content-encoding': 'br' } })!;
    const upstream = createBrotliCompress({ flush: constants.BROTLI_OPERATION_FLUSH });
    upstream.pipe(t);
    const first = new Promise<string>((resolve) => {
      let got = Buffer.alloc(0);
      const sink = new PassThrough();
      t.pipe(sink);
      const dec = (buf: Buffer) => {
        try {
          return brotliDecompressSync(buf, { finishFlush: constants.BROTLI_OPERATION_FLUSH }).toString('utf8');
        } catch {
          return '';
        }
      };
      sink.on('data', (c: Buffer) => {
        got = Buffer.concat([got, c]);
        const text = streamedText(dec(got));
        if (text !== '') resolve(text);
      });
    });
    upstream.write(openAiChatStream(['Hello there. ']).split('data: [DONE]')[0]!);
    expect(await first).toBe('Hello there. ');
    upstream.end();
  });

  it('reports a summary (entity, rule, count, never a value) when the body ends', async () => {
    const seen: { id: string; summary: MaskingSummaryEntry[]; complete: boolean }[] = [];
    const stage = createMaskingStage({ profiles, onSummary: (ex, summary, complete) => seen.push({ id: ex.id, summary, complete }) });
    await through(stage.responseTransform(exchange(['pii']), { status: 200, headers: SSE_HEAD })!, Buffer.from(sse), 64);
    expect(seen).toEqual([
      {
        id: 'req_test',
        complete: true,
        summary: [
          { entity: 'credit_card', rule: 'detector:credit_card', count: 1 },
          { entity: 'email', rule: 'detector:email', count: 1 },
          { entity: 'secret', rule: 'detector:secret', count: 1 },
        ],
      },
    ]);
  });

  it('refuses binary content types with 502 unless the profile allows them, and passes bodiless responses', () => {
    const stage = createMaskingStage({ profiles });
    const png = { status: 200, headers: { 'content-type': 'image/png' } };
    expect(() => stage.responseTransform(exchange(['pii']), png)).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED', status: 502 }));
    expect(() => stage.responseTransform(exchange(['pii']), { status: 200, headers: { 'content-type': 'application/octet-stream' } })).toThrow(
      expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }),
    );
    expect(stage.responseTransform(exchange(['media']), png)).toBeNull();
    // Two profiles: binary passes only if every one allows it.
    expect(() => stage.responseTransform(exchange(['media', 'pii']), png)).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
    expect(stage.responseTransform(exchange([]), png)).toBeNull();
    expect(stage.responseTransform(exchange(['pii']), { status: 204, headers: {} })).toBeNull();
  });

  it('refuses encodings it cannot decode, and a corrupt compressed body', async () => {
    const stage = createMaskingStage({ profiles });
    expect(() => stage.responseTransform(exchange(['pii']), { status: 200, headers: { 'content-type': 'text/plain', 'content-encoding': 'zstd' } })).toThrow(
      expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }),
    );
    const t = stage.responseTransform(exchange(['pii']), { status: 200, headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip' } })!;
    const corrupt = Buffer.concat([gzipSync('hello ann@example.org').subarray(0, 12), Buffer.from('garbage!!')]);
    await expect(through(t, corrupt, 4)).rejects.toMatchObject({ code: 'ERR_MASKING_BLOCKED' });
  });

  it('masks text and JSON bodies by content type; brotli JSON as well', async () => {
    const stage = createMaskingStage({ profiles });
    const text = stage.responseTransform(exchange(['pii']), { status: 200, headers: { 'content-type': 'text/plain' } })!;
    expect((await through(text, Buffer.from('ip 10.1.2.3 and ACME-123456\n'), 2)).toString()).toBe('ip [IP_ADDRESS] and [ACCOUNT]\n');
    const json = stage.responseTransform(exchange(['hashed']), { status: 200, headers: { 'content-type': 'application/json', 'content-encoding': 'br' } })!;
    const out = brotliDecompressSync(await through(json, brotliCompressSync('{"a":"ann@example.org","b":"ann@example.org"}'), 3));
    const parsed = JSON.parse(out.toString()) as { a: string; b: string };
    expect(parsed.a).toMatch(/^<EMAIL:[0-9a-f]{6}>$/);
    expect(parsed.b).toBe(parsed.a);
  });
});
