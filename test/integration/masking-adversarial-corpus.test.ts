/**
 * What a caller reads, through the real gateway (direct proxy and tunnel), from an upstream that tries
 * every way of slipping a value past masking: framing, escapes, repeated keys, keys and numbers,
 * headers, and the credential sluice itself injects. Each answer is read as a client reads it (JSON
 * decoded, NFKC, invisible characters removed) and must hold none of the values; nor may the recording.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { keyRingFromSettings } from '../../server/recording/key-ring.js';
import { readStoredSession } from '../helpers/stored-sessions.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { gatewayFixture, httpOver, openClientMux, type HttpAnswer, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();

const CREDENTIAL = 'sk-adversarial-injected-0123456789abcdef';
const EMAIL = 'jane.doe@example.com';
const CARD = '4111111111111111';
const MAX_JSON = 4096;
/** jane.doe@example.com with its dot and at sign as JSON escapes. */
const ESCAPED_EMAIL = 'jane\\u002edoe\\u0040example.com';

/** One upstream answer: what it sends, and the values no caller may read in it. */
interface Case {
  readonly name: string;
  readonly headers: Record<string, string | string[]>;
  /** The body, or the SSE events written one by one. */
  readonly body: string | Buffer | readonly string[];
  readonly secrets: readonly string[];
  /** How the client decodes the body (default UTF-8). */
  readonly decode?: BufferEncoding;
  /** Text the caller must read (after decoding and assembling the stream) on the masked connection. */
  readonly reads?: string;
  /** Extra checks on what the caller got. */
  readonly check?: (answer: HttpAnswer) => void;
}

const JSON_TYPE = { 'content-type': 'application/json' };
const SSE_TYPE = { 'content-type': 'text/event-stream' };

function sseDelta(content: string): string {
  return `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`;
}

const embedding = Array.from({ length: 400 }, (_, i) => (i % 2 === 0 ? 0.0000064336928 : -0.0411111111111111));

const CASES: readonly Case[] = [
  {
    name: 'a JSON answer over max_json_body stays valid JSON, its floats intact',
    headers: JSON_TYPE,
    body: JSON.stringify({ object: 'list', data: [{ object: 'embedding', embedding, index: 0 }], note: `from ${EMAIL}` }),
    secrets: [EMAIL],
    check: (a) => {
      const doc = JSON.parse(a.body.toString('utf8'));
      expect(doc.data[0].embedding).toEqual(embedding);
      expect(doc.note).toBe('from [EMAIL]');
    },
  },
  {
    name: 'response header values are masked and the upstream set-cookie dropped',
    headers: { ...JSON_TYPE, 'x-customer-email': EMAIL, 'set-cookie': [`sid=${EMAIL}; Path=/`] },
    body: '{"ok":true}',
    secrets: [EMAIL],
    check: (a) => {
      expect(a.headers['x-customer-email']).toBe('[EMAIL]');
      expect(a.headers['set-cookie']).toBeUndefined();
      expect(a.body.toString()).toBe('{"ok":true}');
    },
  },
  {
    name: 'the injected credential reflected in a header and a JSON body',
    headers: { ...JSON_TYPE, 'x-echo-authorization': `Bearer ${CREDENTIAL}` },
    body: JSON.stringify({ echoed: `Bearer ${CREDENTIAL}`, escaped: `${CREDENTIAL.slice(0, 3)}\\/x` }),
    secrets: [CREDENTIAL],
  },
  {
    name: 'the injected credential reflected in a stream, split across events',
    headers: SSE_TYPE,
    body: [sseDelta('key: '), `data: {"choices":[{"index":0,"delta":{"content":"${CREDENTIAL.slice(0, 10)}`, `${CREDENTIAL.slice(10)}"}}]}\n\n`, 'data: [DONE]\n\n'],
    secrets: [CREDENTIAL],
  },
  {
    name: 'a repeated key: the first candidate holds the value, the last is clean',
    headers: JSON_TYPE,
    body: `{"content":"${EMAIL}","content":"nothing"}`,
    secrets: [EMAIL],
  },
  {
    name: 'a repeated key in a streamed event',
    headers: SSE_TYPE,
    body: [`data: {"choices":[{"index":0,"delta":{"content":"mail ${EMAIL}","content":"nothing"}}]}\n\n`, 'data: [DONE]\n\n'],
    secrets: [EMAIL],
  },
  {
    name: 'a value as an object key and a card as a JSON number, in a streamed event',
    headers: SSE_TYPE,
    body: [`data: {"choices":[{"index":0,"delta":{"content":"hi"}}],"${EMAIL}":{"card":${CARD}}}\n\n`, 'data: [DONE]\n\n'],
    secrets: [EMAIL, CARD],
  },
  {
    name: 'a value as an object key, and a card as a JSON number',
    headers: JSON_TYPE,
    body: `{"${EMAIL}": {"card": ${CARD}, "x": 0.5}}`,
    secrets: [EMAIL, CARD],
    check: (a) => expect(JSON.parse(a.body.toString())).toEqual({ '[EMAIL]': { card: '[CREDIT_CARD]', x: 0.5 } }),
  },
  {
    name: 'a JSON answer in charset=utf-16le, written back in UTF-16LE',
    headers: { 'content-type': 'application/json; charset=utf-16le' },
    body: Buffer.from(JSON.stringify({ content: `mail ${EMAIL}` }), 'utf16le'),
    secrets: [EMAIL],
    decode: 'utf16le',
    check: (a) => expect(JSON.parse(a.body.toString('utf16le'))).toEqual({ content: 'mail [EMAIL]' }),
  },
  {
    name: 'a UTF-8 BOM before a JSON body',
    headers: JSON_TYPE,
    body: `\ufeff${JSON.stringify({ content: `mail ${EMAIL}` })}`,
    secrets: [EMAIL],
  },
  {
    name: 'escapes in JSON sent as text/plain',
    headers: { 'content-type': 'text/plain' },
    body: `{"content":"${ESCAPED_EMAIL}"}`,
    secrets: [EMAIL],
  },
  {
    name: 'escapes in JSON sent with no content type',
    headers: {},
    body: `{"content":"${ESCAPED_EMAIL}"}`,
    secrets: [EMAIL],
  },
  {
    name: 'escapes in invalid JSON under a JSON type',
    headers: JSON_TYPE,
    body: `{"content":"${ESCAPED_EMAIL}", oops`,
    secrets: [EMAIL],
  },
  {
    name: 'escapes in a JSON answer over max_json_body',
    headers: JSON_TYPE,
    body: JSON.stringify({ pad: 'p'.repeat(MAX_JSON), content: 'x' }).replace('"x"', `"${ESCAPED_EMAIL}"`),
    secrets: [EMAIL],
  },
  {
    name: 'escapes inside tool-call arguments, a JSON string holding JSON',
    headers: JSON_TYPE,
    body: JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', tool_calls: [{ id: 't', type: 'function', function: { name: 'save', arguments: `{"email":"${ESCAPED_EMAIL}"}` } }] } }] }),
    secrets: [EMAIL],
  },
  {
    name: 'escapes inside streamed tool-call arguments',
    headers: SSE_TYPE,
    body: [
      ...[`{"email":"${ESCAPED_EMAIL.slice(0, 9)}`, `${ESCAPED_EMAIL.slice(9)}"}`].map(
        (args) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: args } }] } }] })}\n\n`,
      ),
      'data: [DONE]\n\n',
    ],
    secrets: [EMAIL],
  },
  {
    name: 'zero-width characters inside a value',
    reads: 'mail [EMAIL] now',
    headers: JSON_TYPE,
    body: JSON.stringify({ content: `mail j\u200ba\u200bn\u200be.doe@example.com now` }),
    secrets: [EMAIL],
  },
  {
    name: 'zero-width characters inside a streamed value, split across events',
    reads: 'mail [EMAIL] now',
    headers: SSE_TYPE,
    body: [sseDelta('mail j\u200ba\u200b'), sseDelta('n\u200be.doe@exa'), sseDelta('mple.com now'), 'data: [DONE]\n\n'],
    secrets: [EMAIL],
  },
  {
    name: 'fullwidth digits and a fullwidth at sign',
    headers: JSON_TYPE,
    body: JSON.stringify({ card: '４１１１ １１１１ １１１１ １１１１', mail: 'jane.doe＠example.com' }),
    secrets: [EMAIL, '4111 1111 1111 1111'],
    check: (a) => expect(JSON.parse(a.body.toString())).toEqual({ card: '[CREDIT_CARD]', mail: '[EMAIL]' }),
  },
  {
    name: 'Cyrillic look-alikes of Latin letters in a streamed value',
    reads: 'mail [EMAIL] now',
    headers: SSE_TYPE,
    body: [sseDelta('mail j\u0430ne.d\u043ee@ex'), sseDelta('ample.com now'), 'data: [DONE]\n\n'],
    secrets: [EMAIL, 'j\u0430ne.d\u043ee@example.com'],
  },
];

/** The text a client reads: JSON string literals decoded, NFKC, invisible (format) characters removed. */
function readable(text: string): string {
  let decoded = text;
  // Twice: a string can hold JSON with escapes of its own (tool-call arguments).
  for (let round = 0; round < 2; round++) {
    decoded = decoded.replace(/"((?:[^"\\]|\\.)*)"/g, (literal: string) => {
      try {
        return JSON.stringify(JSON.parse(literal) as string).replace(/\\"/g, '"');
      } catch {
        return literal;
      }
    });
  }
  return decoded.normalize('NFKC').replace(/\p{Cf}/gu, '');
}

/** What a streaming client assembles: each choice's content and tool-call arguments, joined across events. */
function assembled(text: string): string {
  let out = '';
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    for (const choice of JSON.parse(line.slice(6)).choices ?? []) {
      out += choice.delta?.content ?? '';
      for (const call of choice.delta?.tool_calls ?? []) out += call.function?.arguments ?? '';
    }
  }
  return out;
}

function expectNone(where: string, text: string, secrets: readonly string[], head = ''): void {
  const read = readable(head) + readable(text) + readable(assembled(text));
  for (const s of secrets) expect(read, `${where} holds a value`).not.toContain(s);
}

let upstream: ReturnType<typeof createServer>;
let gw: TestGateway;

beforeAll(async () => {
  upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
    const c = CASES[Number(req.url!.split('/').pop())]!;
    req.resume();
    req.on('end', async () => {
      res.writeHead(200, c.headers);
      if (Array.isArray(c.body)) {
        for (const event of c.body) {
          res.write(event);
          await new Promise((r) => setTimeout(r, 5));
        }
        res.end();
      } else {
        res.end(c.body);
      }
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const origin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const connection = (name: string, masking: string[]) => ({
    name,
    type: 'http',
    upstream: origin,
    allow_groups: ['ml-eng'],
    headers: { authorization: `Bearer ${CREDENTIAL}` },
    masking,
  });
  gw = await gateways.start({
    config: {
      connections: [connection('masked', ['pii']), connection('plain', [])],
      masking_profiles: { pii: { detectors: ['email', 'phone', 'credit_card', 'ssn'], max_json_body: MAX_JSON } },
    },
  });
});

afterAll(async () => {
  await gw?.close();
  await new Promise((r) => upstream?.close(r));
});

async function viaProxy(connection: string, index: number): Promise<HttpAnswer> {
  const res = await fetch(`${gw.url}/v1/proxy/${connection}/case/${index}`, { headers: { authorization: `Bearer ${await gw.token('alice')}` } });
  return { status: res.status, headers: Object.fromEntries([...res.headers].map(([k, v]) => [k, k === 'set-cookie' ? res.headers.getSetCookie() : v])), body: Buffer.from(await res.arrayBuffer()) };
}

async function viaTunnel(connection: string, index: number): Promise<{ answer: HttpAnswer; session: string }> {
  const tunnel = await openClientMux(gw.tunnelUrl(connection), await gw.token('alice'));
  const answer = await httpOver(() => tunnel.mux.openStream(), { path: `/case/${index}` });
  tunnel.mux.close(1000, 'done');
  return { answer, session: tunnel.helloMessage.session_id };
}

/** Every recorded response head and body chunk of a session, as text. */
async function recorded(session: string): Promise<{ head: string; text: string }> {
  const dir = gw.config.storage.dir;
  const index = new SqliteStore({ file: join(dir, 'index.sqlite') });
  let info;
  for (let i = 0; i < 200 && info?.endedAt === undefined; i++) {
    info = await index.getSession(session);
    if (info?.endedAt === undefined) await new Promise((r) => setTimeout(r, 10));
  }
  await index.close();
  const keyRing = keyRingFromSettings(gw.config.storage)!;
  let text = '';
  let head = '';
  for (const e of (await readStoredSession(dir, info!.file, keyRing)) as RecordedEvent[]) {
    if (e.type === 'exchange.response') head += JSON.stringify(e.fields);
    if (e.type === 'exchange.chunk' && e.payload) text += e.payload.toString('utf8');
  }
  return { head, text };
}

describe.each(['masked', 'plain'] as const)('an adversarial upstream on the %s connection', (connection) => {
  CASES.forEach((c, index) => {
    // Only the injected credential is kept from callers of a connection without masking.
    const secrets = connection === 'plain' ? c.secrets.filter((s) => s === CREDENTIAL) : c.secrets;
    if (secrets.length === 0) return;
    it(`${c.name} (proxy and tunnel)`, async () => {
      const proxied = await viaProxy(connection, index);
      expect(proxied.status).toBe(200);
      expectNone('the proxied answer', proxied.body.toString(c.decode ?? 'utf8'), secrets, JSON.stringify(proxied.headers));
      const { answer, session } = await viaTunnel(connection, index);
      expect(answer.status).toBe(200);
      expectNone('the tunnelled answer', answer.body.toString(c.decode ?? 'utf8'), secrets, JSON.stringify(answer.headers));
      if (connection === 'masked') {
        c.check?.(proxied);
        c.check?.(answer);
        for (const a of [proxied, answer]) if (c.reads) expect(readable(a.body.toString()) + readable(assembled(a.body.toString()))).toContain(c.reads);
      }
      const record = await recorded(session);
      expectNone('the recording', record.text, secrets, record.head);
    });
  });
});

describe('a JSON answer over max_json_body from the demo model', () => {
  it('reaches the openai SDK as valid JSON: 500 embeddings of 1536 floats (about 9.6 MB) under the pii profile', async () => {
    const demo = await gateways.start({
      model: { apiKey: undefined },
      connections: ({ model }) => [{ name: 'llm', type: 'http', upstream: model.url, allow_groups: ['ml-eng'], masking: ['pii'] }],
      config: {
        masking_profiles: { pii: { detectors: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'] } },
      },
    });
    const client = new OpenAI({ baseURL: `${demo.url}/v1/proxy/llm/v1`, apiKey: await demo.token('alice'), maxRetries: 0 });
    const input = Array.from({ length: 500 }, (_, i) => `sentence number ${i}`);
    const answer = await client.embeddings.create({ model: 'demo-echo', input, dimensions: 1536, encoding_format: 'float' });
    expect(answer.data).toHaveLength(500);
    for (const row of answer.data) {
      expect(row.embedding).toHaveLength(1536);
      expect(row.embedding.every((x) => typeof x === 'number')).toBe(true);
    }
  }, 60_000);
});
