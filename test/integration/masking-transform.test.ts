import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PassThrough, Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, createBrotliCompress, createDeflate, createGzip, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import type { HttpConnectionConfig } from '../../server/config/schema.js';
import { loadMaskingProfiles } from '../../server/masking/load-profiles.js';
import { createMaskingStage } from '../../server/masking/masking-stage.js';
import { startExchange, type Exchange } from '../../server/pipeline/exchange.js';
import { callerResponseHeaders } from '../../server/pipeline/forward-headers.js';
import type { ResponseMasking } from '../../server/pipeline/masking-stage.js';
import { discardSessionRecorder } from '../../server/pipeline/recorder.js';
import { HTTP_RECORDING } from '../../server/protocols/http-carrier.js';
import { openAiChatStream, streamedText } from '../fixtures/masking/sse-streams.js';

const configPath = fileURLToPath(new URL('../fixtures/masking/sluice.yaml', import.meta.url));
const config = parseConfigText(readFileSync(configPath, 'utf8'));
const profiles = await loadMaskingProfiles(config, { baseDir: dirname(configPath) });

function exchange(masking: string[]): Exchange {
  const connection = { ...(config.connections[0] as HttpConnectionConfig), masking };
  const principal = { sub: 'u', groups: ['ml-eng'], roles: [], expiresAt: 0, issuer: 'https://idp.example' };
  return startExchange(
    { principal, connection, session: { id: 'ses_test', recorder: discardSessionRecorder }, clientAddress: '127.0.0.1', via: 'proxy', method: 'POST', path: '/v1/chat/completions', headers: {} },
    HTTP_RECORDING,
  );
}

/** The gateway's masking of one response of a connection with these profiles (all of them mask something here). */
function responseMasking(masking: string[]): ResponseMasking {
  return createMaskingStage({ profiles }).responseMasking(exchange(masking))!;
}

/** The body Transform the pipeline puts between the upstream and the caller for this response head. */
function bodyTransform(masking: string[], headers: Record<string, string>, status = 200): Transform {
  return responseMasking(masking).body({ status, headers })!.transform;
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

const SSE_HEAD = { 'content-type': 'text/event-stream; charset=utf-8' };
const sse = openAiChatStream(['Card 4111 1111 ', '1111 1111, mail ann@exa', 'mple.org, key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv.']);
const expectedText = 'Card [CREDIT_CARD], mail [EMAIL], key [SECRET].';

describe('masking on Node streams', () => {
  it('masks an SSE body split at arbitrary byte boundaries', async () => {
    for (const size of [1, 3, 17, 4096]) {
      const out = (await through(bodyTransform(['pii'], SSE_HEAD), Buffer.from(sse), size)).toString('utf8');
      expect(streamedText(out)).toBe(expectedText);
      expect(out).toContain('data: [DONE]\n\n');
    }
  });

  it.each(['gzip', 'br', 'deflate'] as const)('decodes a %s body and masks it; the caller gets it decoded', async (encoding) => {
    const out = (await through(bodyTransform(['pii'], { ...SSE_HEAD, 'content-encoding': encoding }), await compressEvents(encoding, sse), 11)).toString('utf8');
    expect(streamedText(out)).toBe(expectedText);
    expect(out).not.toContain('4111');
  });

  it('sends a masked body without Content-Encoding and Content-Length, and counts what it replaced', async () => {
    const masking = responseMasking(['pii']);
    const json = JSON.stringify({ choices: [{ message: { content: 'ssn 123-45-6789' } }] });
    const head = { status: 200, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': '99', 'x-keep': '1' } };
    const body = masking.body(head)!;
    expect(body.rewrite).toBe('masked');
    const out = await through(body.transform, gzipSync(json), 5);
    expect(JSON.parse(out.toString('utf8'))).toEqual({ choices: [{ message: { content: 'ssn [SSN]' } }] });
    expect(callerResponseHeaders(head.headers, 'req_test', true)).toEqual(['content-type', 'application/json', 'x-keep', '1', 'x-request-id', 'req_test']);
    expect(masking.summary()).toEqual([{ entity: 'ssn', rule: 'detector:ssn', count: 1 }]);
  });

  it('releases the first masked delta before the upstream sends more (no buffering beyond the hold-back)', async () => {
    const t = bodyTransform(['pii'], { ...SSE_HEAD, 'content-encoding': 'br' });
    const upstream = createBrotliCompress({ flush: constants.BROTLI_OPERATION_FLUSH });
    upstream.pipe(t);
    const first = new Promise<string>((resolve) => {
      let got = '';
      const sink = new PassThrough();
      t.pipe(sink);
      sink.on('data', (c: Buffer) => {
        got += c.toString('utf8');
        const text = streamedText(got);
        if (text !== '') resolve(text);
      });
    });
    upstream.write(openAiChatStream(['Hello there. ']).split('data: [DONE]')[0]!);
    expect(await first).toBe('Hello there. ');
    upstream.end();
  });

  it('sums up what was masked in the head, the body and the trailers (entity, rule, count, never a value)', async () => {
    const masking = responseMasking(['pii']);
    expect(masking.headers({ 'x-contact': 'ann@example.org', 'content-type': 'text/event-stream' })).toEqual({ 'x-contact': '[EMAIL]', 'content-type': 'text/event-stream' });
    await through(masking.body({ status: 200, headers: SSE_HEAD })!.transform, Buffer.from(sse), 64);
    expect(masking.headers({ 'x-trace': 'card 4111 1111 1111 1111' })).toEqual({ 'x-trace': 'card [CREDIT_CARD]' });
    expect(masking.summary()).toEqual([
      { entity: 'credit_card', rule: 'detector:credit_card', count: 2 },
      { entity: 'email', rule: 'detector:email', count: 2 },
      { entity: 'secret', rule: 'detector:secret', count: 1 },
    ]);
  });

  it('refuses binary content types with 502 unless the profile allows them, and passes bodiless responses', () => {
    const png = { status: 200, headers: { 'content-type': 'image/png' } };
    expect(() => bodyTransform(['pii'], png.headers)).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED', status: 502 }));
    expect(() => bodyTransform(['pii'], { 'content-type': 'application/octet-stream' })).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
    expect(responseMasking(['media']).body(png)).toBeNull();
    // Two profiles: binary passes only if every one allows it.
    expect(() => bodyTransform(['media', 'pii'], png.headers)).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
    // No profile and no injected credential: no masking at all, so no stream either.
    expect(createMaskingStage({ profiles }).responseMasking(exchange([]))).toBeNull();
    expect(responseMasking(['pii']).body({ status: 204, headers: {} })).toBeNull();
  });

  it('refuses encodings it cannot decode, and a corrupt compressed body', async () => {
    expect(() => bodyTransform(['pii'], { 'content-type': 'text/plain', 'content-encoding': 'zstd' })).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
    const t = bodyTransform(['pii'], { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
    const corrupt = Buffer.concat([gzipSync('hello ann@example.org').subarray(0, 12), Buffer.from('garbage!!')]);
    await expect(through(t, corrupt, 4)).rejects.toMatchObject({ code: 'ERR_MASKING_BLOCKED' });
  });

  it('masks text and JSON bodies by content type; brotli JSON as well', async () => {
    const text = bodyTransform(['pii'], { 'content-type': 'text/plain' });
    expect((await through(text, Buffer.from('ip 10.1.2.3 and ACME-123456\n'), 2)).toString()).toBe('ip [IP_ADDRESS] and [ACCOUNT]\n');
    const json = bodyTransform(['hashed'], { 'content-type': 'application/json', 'content-encoding': 'br' });
    const out = await through(json, brotliCompressSync('{"a":"ann@example.org","b":"ann@example.org"}'), 3);
    const parsed = JSON.parse(out.toString()) as { a: string; b: string };
    expect(parsed.a).toMatch(/^<EMAIL:[0-9a-f]{6}>$/);
    expect(parsed.b).toBe(parsed.a);
  });
});
