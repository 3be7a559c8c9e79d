/**
 * Streamed answers of every shape through the real gateway, over /v1/proxy and over the tunnel: what the
 * caller reads once it has parsed the stream (each event JSON-decoded, each channel's text joined) and
 * what the recording keeps hold no personal data, however the upstream split, framed or labelled it.
 */
import { once } from 'node:events';
import http, { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayFixture, openClientMux, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();

const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';
/** How the upstream splits the values: each piece alone is no PII to a detector. */
const EMAIL_PIECES = ['jane', '.doe', '@exam', 'ple.com'];
const CARD_PIECES = ['4111 1', '111 11', '11 111', '1'];
/** Pieces of the values that must not reach the caller or the recording. */
const FORBIDDEN = [EMAIL, CARD, 'jane', '.doe', '@exam', 'ple.com', '4111 1', '111 11', '11 111'];
const MAX_LINE = 64 * 1024;

type Json = Record<string, any>;

/** A scripted upstream: each case answers with its content type and its chunks, one write each. */
interface Case {
  readonly type: string;
  readonly chunks: readonly (string | Buffer)[];
}

const chatChunk = (choice: Json) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-s', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, finish_reason: null, ...choice }] })}\n\n`;
const tokenOf = (t: string) => ({ token: t, logprob: -0.5, bytes: [...Buffer.from(t)], top_logprobs: [{ token: t, logprob: -0.5, bytes: [...Buffer.from(t)] }] });
const words = ['Write to ', ...EMAIL_PIECES, ', card ', ...CARD_PIECES, ' now.'];
const ndjsonLine = (o: Json) => `${JSON.stringify(o)}\n`;

const CASES: Record<string, Case> = {
  logprobs: {
    type: 'text/event-stream',
    chunks: [
      chatChunk({ delta: { role: 'assistant', content: '' }, logprobs: null }),
      ...words.map((w) => chatChunk({ delta: { content: w }, logprobs: { content: [tokenOf(w)], refusal: null } })),
      chatChunk({ delta: {}, logprobs: null, finish_reason: 'stop' }),
      'data: [DONE]\n\n',
    ],
  },
  'logprobs-json': {
    type: 'application/json',
    chunks: [
      JSON.stringify({
        id: 'chatcmpl-s',
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: words.join('') }, logprobs: { content: words.map(tokenOf), refusal: null }, finish_reason: 'stop' }],
      }),
    ],
  },
  'ollama-chat': {
    type: 'application/x-ndjson',
    chunks: [
      ...words.map((w) => ndjsonLine({ model: 'llama3', created_at: '2025-01-01T00:00:00Z', message: { role: 'assistant', content: w }, done: false })),
      ndjsonLine({ model: 'llama3', created_at: '2025-01-01T00:00:01Z', message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop' }),
    ],
  },
  'ollama-generate': {
    type: 'application/x-ndjson',
    chunks: [
      ...words.map((w) => ndjsonLine({ model: 'llama3', created_at: '2025-01-01T00:00:00Z', response: w, done: false })),
      ndjsonLine({ model: 'llama3', created_at: '2025-01-01T00:00:01Z', response: '', done: true, context: [1, 2, 3] }),
    ],
  },
  tgi: {
    type: 'text/event-stream',
    chunks: words.map((w, i) => `data:${JSON.stringify({ index: i, token: { id: 100 + i, text: w, logprob: -0.5, special: false }, generated_text: null, details: null })}\n\n`),
  },
  'function-call': {
    type: 'text/event-stream',
    chunks: [
      chatChunk({ delta: { role: 'assistant', function_call: { name: 'send', arguments: '' } } }),
      ...['{"to":"', ...EMAIL_PIECES, '","card":"', ...CARD_PIECES, '"}'].map((a) => chatChunk({ delta: { function_call: { arguments: a } } })),
      chatChunk({ delta: {}, finish_reason: 'function_call' }),
      'data: [DONE]\n\n',
    ],
  },
  audio: {
    type: 'text/event-stream',
    chunks: [
      ...words.map((w) => chatChunk({ delta: { audio: { id: 'audio_1', transcript: w } } })),
      chatChunk({ delta: {}, finish_reason: 'stop' }),
      'data: [DONE]\n\n',
    ],
  },
  plain: { type: 'text/event-stream', chunks: words.map((w) => `data: ${w}\n\n`) },
  'json-as-sse': {
    type: 'text/event-stream',
    chunks: [`{"error":{"message":"No account for ${EMAIL.slice(0, 8)}`, `${EMAIL.slice(8)} (card ${CARD})","code":"not_found"}}`],
  },
  fields: {
    type: 'text/event-stream',
    chunks: [`: trace for ${EMAIL}\nid: ${CARD}\nevent: ${EMAIL}\ndata: {"type":"note"}\n\n`, 'data: [DONE]\n\n'],
  },
  'long-line': {
    type: 'text/event-stream',
    chunks: [`data: {"note":"${EMAIL}`, ...Array.from({ length: 80 }, () => 'a'.repeat(1024)), '"}\n\n'],
  },
};

/** The BOM case, read by the official SDK: an OpenAI chat stream whose first event follows a UTF-8 BOM. */
const BOM_CHUNKS = [
  Buffer.from([0xef, 0xbb, 0xbf]),
  // The whole address in the first event: the one a reader that does not skip the BOM takes for no event at all.
  chatChunk({ delta: { role: 'assistant', content: `Write to ${EMAIL}, card ` } }),
  ...CARD_PIECES.concat(' now.').map((w) => chatChunk({ delta: { content: w } })),
  chatChunk({ delta: {}, finish_reason: 'stop' }),
  'data: [DONE]\n\n',
];

async function startScriptedUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    for await (const _ of req) void _;
    const name = (req.url ?? '').includes('/bom/') ? 'bom' : (req.url ?? '').split('/').pop()!;
    const c = name === 'bom' ? { type: 'text/event-stream', chunks: BOM_CHUNKS } : CASES[name];
    if (c === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': c.type, 'cache-control': 'no-cache' });
    for (const chunk of c.chunks) {
      if (res.destroyed) return;
      res.write(chunk);
      // Apart in time, so the gateway reads each as a chunk of its own.
      await sleep(2);
    }
    res.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

interface Answer {
  status: number;
  contentType: string;
  body: string;
  /** False when the answer was cut before its end. */
  complete: boolean;
}

let gw: TestGateway;
let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
let aliceToken: string;

beforeAll(async () => {
  upstream = await startScriptedUpstream();
  const connection = (name: string, masking: string[]) => ({ name, type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], masking });
  gw = await gateways.start({
    config: {
      masking: { max_line: MAX_LINE },
      masking_profiles: {
        pii: { detectors: ['email', 'phone', 'credit_card', 'secret'] },
        'pii-strip': { detectors: ['email', 'phone', 'credit_card', 'secret'], logprobs: 'strip' },
      },
      connections: [connection('llm', ['pii']), connection('llm-strip', ['pii-strip'])],
    },
  });
  aliceToken = await gw.token('alice');
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

async function viaProxy(path: string, connection = 'llm'): Promise<Answer> {
  const res = await fetch(`${gw.url}/v1/proxy/${connection}${path}`, { method: 'POST', headers: { authorization: `Bearer ${aliceToken}`, 'content-type': 'application/json' }, body: '{}' });
  let body = '';
  let complete = true;
  try {
    body = await res.text();
  } catch {
    complete = false;
  }
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', body, complete };
}

async function viaTunnel(path: string, connection = 'llm'): Promise<Answer> {
  const tunnel = await openClientMux(gw.tunnelUrl(connection), aliceToken);
  try {
    return await new Promise<Answer>((resolve) => {
      const req = http.request(
        { method: 'POST', path, headers: { host: connection, 'content-type': 'application/json' }, createConnection: (() => tunnel.mux.openStream() as Duplex) as never },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', () => undefined);
          res.on('close', () =>
            resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8'), complete: res.complete }),
          );
        },
      );
      // A stream cut before its head: reset by the gateway.
      req.on('error', () => resolve({ status: 0, contentType: '', body: '', complete: false }));
      req.end('{}');
    });
  } finally {
    tunnel.mux.close(1000, 'done');
  }
}

const CALLERS = { proxy: viaProxy, tunnel: viaTunnel } as const;

function sseEvents(body: string): EventSourceMessage[] {
  const out: EventSourceMessage[] = [];
  createParser({ onEvent: (e) => out.push(e) }).feed(body);
  return out;
}

/** Each event's data, JSON-decoded ([DONE] left out). */
function sseJson(body: string): Json[] {
  return sseEvents(body)
    .filter((e) => e.data !== '[DONE]')
    .map((e) => JSON.parse(e.data) as Json);
}

function ndjson(body: string): Json[] {
  return body
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Json);
}

function expectClean(text: string): void {
  for (const f of FORBIDDEN) expect(text, `holds "${f}"`).not.toContain(f);
}

const MASKED = 'Write to [EMAIL], card [CREDIT_CARD] now.';

describe.each(Object.entries(CALLERS))('stream shapes masked through the gateway (%s)', (_name, call) => {
  it('chat logprobs: the content and the tokens both spell the masked text; no token carries part of a value', async () => {
    const a = await call('/v1/chat/logprobs');
    const chunks = sseJson(a.body);
    const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    const tokens = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
    expect(content).toBe(MASKED);
    expect(tokens.map((t: Json) => t.token).join('')).toBe(MASKED);
    for (const t of tokens) expect(Buffer.from(t.bytes).toString('utf8')).toBe(t.token);
    expectClean(a.body);
  });

  it('logprobs: strip removes them', async () => {
    const a = await call('/v1/chat/logprobs', 'llm-strip');
    const chunks = sseJson(a.body);
    expect(chunks.every((c) => (c.choices[0]?.logprobs ?? null) === null)).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(MASKED);
    expectClean(a.body);
  });

  it('a whole JSON answer with logprobs', async () => {
    const a = await call('/v1/chat/logprobs-json');
    const body = JSON.parse(a.body) as Json;
    expect(body.choices[0].message.content).toBe(MASKED);
    expect(body.choices[0].logprobs.content.map((t: Json) => t.token).join('')).toBe(MASKED);
    expectClean(a.body);
  });

  it('Ollama NDJSON: /api/chat message.content and /api/generate response', async () => {
    const chat = await call('/api/ollama-chat');
    expect(chat.contentType).toContain('application/x-ndjson');
    const lines = ndjson(chat.body);
    expect(lines.map((l) => l.message.content).join('')).toBe(MASKED);
    expect(lines.at(-1)!.done).toBe(true);
    expectClean(chat.body);
    const generate = await call('/api/ollama-generate');
    expect(ndjson(generate.body).map((l) => l.response).join('')).toBe(MASKED);
    expectClean(generate.body);
  });

  it("an unknown shape (TGI's token.text) under unknown_stream: mask", async () => {
    const a = await call('/generate_stream/tgi');
    const events = sseJson(a.body);
    expect(events.map((e) => e.token.text).join('')).toBe(MASKED);
    expect(events.map((e) => e.token.id)).toEqual(words.map((_, i) => 100 + i));
    expectClean(a.body);
  });

  it('legacy delta.function_call.arguments and delta.audio.transcript', async () => {
    const fc = await call('/v1/chat/function-call');
    expect(JSON.parse(sseJson(fc.body).map((c) => c.choices[0]?.delta?.function_call?.arguments ?? '').join(''))).toEqual({ to: '[EMAIL]', card: '[CREDIT_CARD]' });
    expectClean(fc.body);
    const audio = await call('/v1/chat/audio');
    expect(sseJson(audio.body).map((c) => c.choices[0]?.delta?.audio?.transcript ?? '').join('')).toBe(MASKED);
    expectClean(audio.body);
  });

  it('plain-text data events as one channel', async () => {
    const a = await call('/stream/plain');
    expect(sseEvents(a.body).map((e) => e.data).join('')).toBe(MASKED);
    expectClean(a.body);
  });

  it('a JSON body labelled text/event-stream, and event:, id: and comment lines', async () => {
    const json = await call('/v1/chat/json-as-sse');
    expect(JSON.parse(json.body).error.message).toBe('No account for [EMAIL] (card [CREDIT_CARD])');
    expectClean(json.body);
    const fields = await call('/v1/chat/fields');
    expect(sseEvents(fields.body)[0]).toMatchObject({ id: '[CREDIT_CARD]', event: '[EMAIL]' });
    expectClean(fields.body);
  });

  it('a line past masking.max_line: the stream is cut, nothing of it sent', async () => {
    const a = await call('/v1/chat/long-line');
    expect(a.complete).toBe(false);
    expect(a.body).toBe('');
  });
});

describe('a UTF-8 BOM before the first event', () => {
  it('the official openai SDK reads the stream masked', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/bom/v1`, apiKey: aliceToken, maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toBe(MASKED);
    expectClean(text);
  });
});

describe('the recording', () => {
  it('holds no value of any stream above, and the cut stream as ERR_MASKING_BLOCKED', async () => {
    const carol = { authorization: `Bearer ${await gw.token('carol')}` };
    const list = (await (await fetch(`${gw.url}/v1/sessions?user=alice&limit=500`, { headers: carol })).json()) as { sessions: { id: string }[] };
    expect(list.sessions.length).toBeGreaterThan(0);
    let recorded = '';
    const errors: Json[] = [];
    let responses = 0;
    for (const s of list.sessions) {
      const text = await (await fetch(`${gw.url}/v1/sessions/${s.id}/events`, { headers: carol })).text();
      for (const line of text.trim().split('\n')) {
        const e = JSON.parse(line) as Json;
        if (e.payload !== undefined) recorded += Buffer.from(e.payload, 'base64').toString('utf8');
        if (e.type === 'exchange.error') errors.push(e);
        if (e.type === 'exchange.response') responses++;
      }
    }
    expect(responses).toBeGreaterThanOrEqual(2 * 12);
    expect(recorded).toContain('[EMAIL]');
    expectClean(recorded);
    const cut = errors.filter((e) => JSON.stringify(e).includes('ERR_MASKING_BLOCKED'));
    expect(cut.length).toBe(2);
    expect(JSON.stringify(cut)).toMatch(/max_line/);
  });
});
