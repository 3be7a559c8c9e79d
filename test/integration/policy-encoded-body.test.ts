import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayFixture, type HttpAnswer, type TestGateway } from '../helpers/gateway.js';
import { openLlmRoutes, type LlmRoute, type LlmRoutes } from '../helpers/llm-routes.js';
import { utf16be, utf32 } from '../helpers/text-encodings.js';

const gateways = gatewayFixture();

/**
 * A request a rule denies must be denied however its body is encoded, as long as the upstream's JSON
 * parser can read it (Python's json.loads(bytes) reads UTF-16/32 and a UTF-8 BOM; many parsers honour
 * `charset=`; some servers inflate `content-encoding`). What sluice cannot read, it refuses.
 */

const DENIED = { model: 'gpt-5', max_tokens: 100000, messages: [{ role: 'user', content: 'hi' }] };
const text = JSON.stringify(DENIED);

let gw: TestGateway;
let routes: LlmRoutes;

beforeAll(async () => {
  gw = await gateways.start({
    config: {
      policy_read_ahead: 64 * 1024,
      policies: [{ name: 'max-tokens', when: 'request.json.?max_tokens.orValue(0) > 4096', action: 'deny', message: 'max_tokens is limited to 4096' }],
    },
  });
  routes = await openLlmRoutes(gw, await gw.token('alice'));
});

afterAll(async () => {
  routes?.close();
  await gw?.close();
});

/** POSTs `body` to the chat completions endpoint of `llm`, through the direct proxy or the tunnel. */
function post(path: LlmRoute, body: Buffer, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return routes.post(path, '/v1/chat/completions', body, headers);
}

/** Sends, and checks the gateway refused with `status` and `code` and the upstream received nothing. */
async function expectRefused(path: LlmRoute, body: Buffer, headers: Record<string, string>, status: number, code: string): Promise<{ code: string; message: string }> {
  const before = gw.model.requests.length;
  const answer = await post(path, body, headers);
  const error = (JSON.parse(answer.body.toString()) as { error: { code: string; message: string } }).error;
  expect({ status: answer.status, code: error.code }).toEqual({ status, code });
  expect(gw.model.requests.length).toBe(before);
  return error;
}

const paths: LlmRoute[] = ['proxy', 'tunnel'];

describe.each(paths)('policy over encoded request bodies (%s)', (path) => {
  it('denies the plain UTF-8 body (the baseline)', async () => {
    const error = await expectRefused(path, Buffer.from(text), {}, 403, 'ERR_POLICY_DENIED');
    expect(error.message).toBe('max_tokens is limited to 4096');
  });

  it.each<[string, Buffer]>([
    ['a UTF-8 BOM', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])],
    ['UTF-16LE', Buffer.from(text, 'utf16le')],
    ['UTF-16LE with a BOM', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')])],
    ['UTF-16BE', utf16be(text)],
    ['UTF-16BE with a BOM', Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(text)])],
    ['UTF-32LE', utf32(text, true)],
    ['UTF-32BE with a BOM', Buffer.concat([Buffer.from([0, 0, 0xfe, 0xff]), utf32(text, false)])],
  ])('denies the same document behind %s, without a charset', async (_, body) => {
    await expectRefused(path, body, {}, 403, 'ERR_POLICY_DENIED');
  });

  it('denies it in the charset the Content-Type names, and when the label does not fit the bytes', async () => {
    await expectRefused(path, utf16be(text), { 'content-type': 'application/json; charset=utf-16be' }, 403, 'ERR_POLICY_DENIED');
    await expectRefused(path, Buffer.from(text, 'latin1'), { 'content-type': 'application/json; charset=iso-8859-1' }, 403, 'ERR_POLICY_DENIED');
    await expectRefused(path, Buffer.from(text, 'utf16le'), { 'content-type': 'application/json; charset=utf-8' }, 403, 'ERR_POLICY_DENIED');
  });

  it('sees the last of duplicate keys, the value the upstream acts on', async () => {
    await expectRefused(path, Buffer.from('{"model":"gpt-5","max_tokens":1,"max_tokens":100000,"messages":[]}'), {}, 403, 'ERR_POLICY_DENIED');
  });

  it.each<[string, Buffer]>([
    ['gzip', gzipSync(text)],
    ['deflate', deflateSync(text)],
    ['br', brotliCompressSync(text)],
  ])('decodes a %s content-encoding and denies what it holds', async (coding, body) => {
    await expectRefused(path, body, { 'content-encoding': coding }, 403, 'ERR_POLICY_DENIED');
  });

  it('decodes raw deflate and stacked codings too', async () => {
    await expectRefused(path, deflateRawSync(text), { 'content-encoding': 'deflate' }, 403, 'ERR_POLICY_DENIED');
    await expectRefused(path, brotliCompressSync(gzipSync(text)), { 'content-encoding': 'gzip, br' }, 403, 'ERR_POLICY_DENIED');
  });

  it('refuses a compressed body that expands past the read-ahead (a zip bomb) with 413', async () => {
    const bomb = gzipSync(`{"model":"gpt-5",${' '.repeat(8 * 1024 * 1024)}"max_tokens":100000}`);
    expect(bomb.length).toBeLessThan(64 * 1024);
    const error = await expectRefused(path, bomb, { 'content-encoding': 'gzip' }, 413, 'ERR_BODY_TOO_LARGE');
    expect(error.message).toMatch(/decompressed, it is larger than the 65536 bytes policy reads ahead/);
  });

  it('refuses with 400 what it cannot read: an unknown coding, corrupt gzip, an unknown charset, JSON that does not parse', async () => {
    const unknown = await expectRefused(path, Buffer.from(text), { 'content-encoding': 'zstd' }, 400, 'ERR_BODY_UNREADABLE');
    expect(unknown.message).toMatch(/^The request body cannot be read as JSON, so the policies of connection "llm" cannot judge it: content-encoding "zstd" is not supported/);
    await expectRefused(path, gzipSync(text).subarray(0, 20), { 'content-encoding': 'gzip' }, 400, 'ERR_BODY_UNREADABLE');
    await expectRefused(path, Buffer.from(text), { 'content-type': 'application/json; charset=ebcdic-cp-us' }, 400, 'ERR_BODY_UNREADABLE');
    // Python reads NaN; JSON.parse does not. Refused rather than judged as "no body".
    await expectRefused(path, Buffer.from('{"model":"gpt-5","max_tokens":100000,"temperature":NaN}'), {}, 400, 'ERR_BODY_UNREADABLE');
    // Shaped like JSON under another label: still not "no body".
    await expectRefused(path, Buffer.from('{"model":"gpt-5","max_tokens":100000,}'), { 'content-type': 'text/plain' }, 400, 'ERR_BODY_UNREADABLE');
  });

  it('forwards, byte for byte, what it read and allowed, and bodies that are not JSON at all', async () => {
    const allowed = Buffer.from(JSON.stringify({ model: 'demo-echo', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }), 'utf16le');
    let before = gw.model.requests.length;
    await post(path, allowed);
    expect(gw.model.requests.length).toBe(before + 1);
    expect(gw.model.requests.at(-1)!.headers['content-length']).toBe(String(allowed.length));

    const zipped = gzipSync(JSON.stringify({ model: 'demo-echo', max_tokens: 10, messages: [] }));
    before = gw.model.requests.length;
    await post(path, zipped, { 'content-encoding': 'gzip' });
    expect(gw.model.requests.length).toBe(before + 1);
    expect(gw.model.requests.at(-1)!.headers['content-encoding']).toBe('gzip');

    before = gw.model.requests.length;
    await post(path, Buffer.from('max_tokens=100000'), { 'content-type': 'application/x-www-form-urlencoded' });
    expect(gw.model.requests.length).toBe(before + 1);
  });
});
