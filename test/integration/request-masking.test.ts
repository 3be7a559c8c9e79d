/**
 * Prompts masked before they leave: the real `openai` SDK through /v1/proxy and through a tunnel, to an
 * upstream that keeps what it received and answers with the placeholders it was sent. The upstream never
 * sees the prompt's personal data; with `restore` the caller reads the values back, even from a placeholder
 * split across three deltas, still masked where an answer profile masks them; the recording and the logs
 * keep placeholders only, unless `record.request_body: raw`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionJson, SessionListJson } from '../../shared/sessions-api.js';
import { validateConfig } from '../../server/config/load.js';
import { gatewayFixture, openClientMux, type TestGateway } from '../helpers/gateway.js';
import { listenOnLoopback } from '../helpers/loopback.js';

const gateways = gatewayFixture();

const EMAIL = 'jane.doe@example.com';
const OTHER_EMAIL = 'bob.stone@example.org';
const CARD = '4111 1111 1111 1111';
const ORIGINALS = [EMAIL, OTHER_EMAIL, CARD];

type Json = Record<string, any>;

/** A conversation with the values in a content part, a tool call's arguments, a tool result and plain text. */
const MESSAGES: OpenAI.Chat.ChatCompletionMessageParam[] = [
  { role: 'system', content: 'You send mail.' },
  { role: 'user', content: [{ type: 'text', text: `Email ${EMAIL} about card ${CARD}.` }] },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'send', arguments: JSON.stringify({ to: EMAIL }) } }] },
  { role: 'tool', tool_call_id: 'call_1', content: `Delivered to ${EMAIL}; copy to ${OTHER_EMAIL}.` },
  { role: 'user', content: `Once more to ${EMAIL}.` },
];

/** An upstream that keeps each body it received and answers with the placeholders found in it. */
async function startEchoingUpstream(): Promise<{ url: string; received: string[]; close(): Promise<void> }> {
  const received: string[] = [];
  const server = createHttpServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    received.push(body);
    expect(Number(req.headers['content-length'])).toBe(Buffer.byteLength(body));
    const tokens = [...new Set(body.match(/<[A-Z_]+_\d+>/g) ?? [])];
    const email = tokens.find((t) => t.startsWith('<EMAIL_')) ?? '<none>';
    const card = tokens.find((t) => t.startsWith('<CREDIT_CARD_')) ?? '<none>';
    const request = JSON.parse(body) as Json;
    const base = { id: 'chatcmpl-r', created: 1, model: 'm' };
    if (request.stream !== true) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          ...base,
          object: 'chat.completion',
          choices: [
            {
              index: 0,
              finish_reason: 'tool_calls',
              message: {
                role: 'assistant',
                content: `Sent to ${email}; card ${card}; unknown <EMAIL_7>; altered ${email.replace('>', ' >')}.`,
                tool_calls: [{ id: 'call_2', type: 'function', function: { name: 'send', arguments: JSON.stringify({ to: email }) } }],
              },
            },
          ],
        }),
      );
      return;
    }
    const chunk = (delta: Json, finish: string | null = null) =>
      `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    // The email's placeholder in three deltas, each written apart so the gateway reads it as a chunk of its own.
    const [a, b, c] = [email.slice(0, 4), email.slice(4, 7), email.slice(7)];
    const events = [
      chunk({ role: 'assistant', content: 'Sent to ' }),
      chunk({ content: a }),
      chunk({ content: b }),
      chunk({ content: c }),
      chunk({ content: `; card ${card}; unknown <EMAIL_7>.` }),
      chunk({ tool_calls: [{ index: 0, id: 'call_2', type: 'function', function: { name: 'send', arguments: '{"to":"' + a } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: b } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: c + '"}' } }] }),
      chunk({}, 'tool_calls'),
      'data: [DONE]\n\n',
    ];
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    for (const e of events) {
      res.write(e);
      await sleep(5);
    }
    res.end();
  });
  const port = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

let gw: TestGateway;
let upstream: Awaited<ReturnType<typeof startEchoingUpstream>>;
let alice: string;
const logLines: string[] = [];

beforeAll(async () => {
  upstream = await startEchoingUpstream();
  const connection = (name: string, more: Json) => ({ name, type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], ...more });
  gw = await gateways.start({
    config: {
      roles: { auditor: ['security'] },
      storage: { proxy_session_idle: '300ms' },
      masking_profiles: {
        'prompt-pii': { detectors: ['email', 'credit_card'], style: 'placeholder' },
        cards: { detectors: ['credit_card'] },
      },
      connections: [
        connection('llm', { masking: { request: ['prompt-pii'], restore: true } }),
        connection('llm-cards', { masking: { response: ['cards'], request: ['prompt-pii'], restore: true } }),
        connection('llm-kept', { masking: { request: ['prompt-pii'] } }),
        connection('llm-raw', { masking: { request: ['prompt-pii'], restore: true }, record: { request_body: 'raw' } }),
        connection('llm-small', { masking: { request: ['prompt-pii'] }, max_body: 2048 }),
      ],
    },
    app: { logger: { level: 'debug', stream: { write: (line: string) => void logLines.push(line) } } },
  });
  alice = await gw.token('alice');
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

/** A local port whose every connection is one stream of a tunnel to `connection`, as `sluice connect` gives. */
async function tunnelPort(connection: string): Promise<{ url: string; close(): void }> {
  const tunnel = await openClientMux(gw.tunnelUrl(connection), alice);
  const server = createTcpServer((socket: Socket) => {
    const stream = tunnel.mux.openStream();
    socket.pipe(stream).pipe(socket);
    socket.on('error', () => stream.destroy());
    stream.on('error', () => socket.destroy());
  });
  const port = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.close();
      tunnel.mux.close(1000, 'done');
    },
  };
}

/** An SDK client for `connection`, through the direct proxy or a tunnel. */
async function client(via: 'proxy' | 'tunnel', connection: string): Promise<{ sdk: OpenAI; close(): void }> {
  if (via === 'proxy') return { sdk: new OpenAI({ baseURL: `${gw.url}/v1/proxy/${connection}/v1`, apiKey: alice, maxRetries: 0 }), close: () => undefined };
  const port = await tunnelPort(connection);
  return { sdk: new OpenAI({ baseURL: `${port.url}/v1`, apiKey: 'unused', maxRetries: 0 }), close: port.close };
}

/** What the upstream received for the call just made: it holds placeholders, and none of the values. */
function expectUpstreamSawPlaceholders(): Json {
  const body = upstream.received.at(-1)!;
  for (const v of ORIGINALS) expect(body).not.toContain(v);
  const sent = JSON.parse(body) as Json;
  // The same value, the same token, throughout the request: content part, arguments, tool result, text.
  expect(sent.messages[1].content[0].text).toBe('Email <EMAIL_1> about card <CREDIT_CARD_1>.');
  expect(JSON.parse(sent.messages[2].tool_calls[0].function.arguments)).toEqual({ to: '<EMAIL_1>' });
  expect(sent.messages[3].content).toBe('Delivered to <EMAIL_1>; copy to <EMAIL_2>.');
  expect(sent.messages[4].content).toBe('Once more to <EMAIL_1>.');
  return sent;
}

describe.each(['proxy', 'tunnel'] as const)('request masking through the gateway (%s)', (via) => {
  it('the upstream sees placeholders; the caller reads the values back where the answer repeats them', async () => {
    const { sdk, close } = await client(via, 'llm');
    try {
      const answer = await sdk.chat.completions.create({ model: 'm', messages: MESSAGES });
      expectUpstreamSawPlaceholders();
      const message = answer.choices[0]!.message;
      // An invented placeholder, and one the model altered, stay as they are.
      expect(message.content).toBe(`Sent to ${EMAIL}; card ${CARD}; unknown <EMAIL_7>; altered <EMAIL_1 >.`);
      expect(JSON.parse((message.tool_calls![0] as { function: { arguments: string } }).function.arguments)).toEqual({ to: EMAIL });
    } finally {
      close();
    }
  });

  it('streamed: a placeholder split across three deltas is put back whole, in content and in tool-call arguments', async () => {
    const { sdk, close } = await client(via, 'llm');
    try {
      const stream = await sdk.chat.completions.create({ model: 'm', messages: MESSAGES, stream: true });
      let content = '';
      let args = '';
      for await (const chunk of stream) {
        const delta = chunk.choices[0]?.delta;
        content += delta?.content ?? '';
        args += delta?.tool_calls?.[0]?.function?.arguments ?? '';
      }
      expectUpstreamSawPlaceholders();
      expect(content).toBe(`Sent to ${EMAIL}; card ${CARD}; unknown <EMAIL_7>.`);
      expect(JSON.parse(args)).toEqual({ to: EMAIL });
    } finally {
      close();
    }
  });

  it('a restored card is still masked where the answer profile masks cards; the email comes back', async () => {
    const { sdk, close } = await client(via, 'llm-cards');
    try {
      const answer = await sdk.chat.completions.create({ model: 'm', messages: MESSAGES });
      expect(answer.choices[0]!.message.content).toBe(`Sent to ${EMAIL}; card [CREDIT_CARD]; unknown <EMAIL_7>; altered <EMAIL_1 >.`);
      const stream = await sdk.chat.completions.create({ model: 'm', messages: MESSAGES, stream: true });
      let content = '';
      for await (const chunk of stream) content += chunk.choices[0]?.delta?.content ?? '';
      expect(content).toBe(`Sent to ${EMAIL}; card [CREDIT_CARD]; unknown <EMAIL_7>.`);
    } finally {
      close();
    }
  });
});

it('without restore the caller reads the placeholders the model wrote', async () => {
  const { sdk } = await client('proxy', 'llm-kept');
  const answer = await sdk.chat.completions.create({ model: 'm', messages: MESSAGES });
  expectUpstreamSawPlaceholders();
  expect(answer.choices[0]!.message.content).toBe('Sent to <EMAIL_1>; card <CREDIT_CARD_1>; unknown <EMAIL_7>; altered <EMAIL_1 >.');
});

it('restores only the placeholders its own exchange gave out, never a value from another caller\'s exchange', async () => {
  const { sdk } = await client('proxy', 'llm');
  // An earlier exchange gives out <EMAIL_1> … <EMAIL_7> for addresses of its own.
  const others = Array.from({ length: 7 }, (_, i) => `someone.${i}@example.net`);
  await sdk.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: `Write to ${others.join(', ')}.` }] });
  const answer = await sdk.chat.completions.create({ model: 'm', messages: MESSAGES });
  // This exchange gave out <EMAIL_1> and <EMAIL_2> only: the model's <EMAIL_7> stays as written.
  const content = answer.choices[0]!.message.content!;
  expect(content).toBe(`Sent to ${EMAIL}; card ${CARD}; unknown <EMAIL_7>; altered <EMAIL_1 >.`);
  for (const other of others) expect(content).not.toContain(other);
});

/** The request bodies the recording keeps for `connection`, decrypted, as the auditor reads them (once a session of it is sealed). */
async function recordedRequests(connection: string): Promise<string[]> {
  const auditor = await gw.token('carol');
  const headers = { authorization: `Bearer ${auditor}` };
  let sealed: SessionJson[] = [];
  let open = true;
  await until(() => sealed.length > 0 && !open, `every session of ${connection} sealed`, 15_000, async () => {
    const { sessions } = (await (await fetch(`${gw.url}/v1/sessions`, { headers })).json()) as SessionListJson;
    const mine = sessions.filter((x) => x.connection === connection);
    sealed = mine.filter((x) => x.status === 'closed');
    open = mine.some((x) => x.status === 'open');
  });
  const bodies: string[] = [];
  for (const s of sealed) {
    const res = await fetch(`${gw.url}/v1/sessions/${s.id}/events`, { headers });
    for (const line of (await res.text()).trim().split('\n')) {
      const e = JSON.parse(line) as { type: string; payload?: string };
      if (e.type === 'exchange.request' && e.payload !== undefined) bodies.push(Buffer.from(e.payload, 'base64').toString('utf8'));
    }
  }
  return bodies;
}

/** Polls `look` until `done` holds. */
async function until(done: () => boolean, what: string, timeoutMs: number, look: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (await look(); !done(); await look()) {
    if (Date.now() > deadline) throw new Error(`no ${what} in time`);
    await sleep(100);
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

/** A POST through the direct proxy, its body sent chunked (no Content-Length) unless `headers` say otherwise. */
async function post(connection: string, body: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; json: Json }> {
  const chunked = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let at = 0; at < body.length; at += 512) controller.enqueue(body.subarray(at, at + 512));
      controller.close();
    },
  });
  const res = await fetch(`${gw.url}/v1/proxy/${connection}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json', ...headers },
    body: chunked,
    duplex: 'half',
  } as RequestInit);
  return { status: res.status, json: (await res.json()) as Json };
}

describe('bodies of any shape and size', () => {
  it('masks an Anthropic request sent chunked, and forwards it with the masked length', async () => {
    const anthropic = {
      model: 'claude',
      max_tokens: 64,
      system: `Reply to ${EMAIL}.`,
      messages: [
        { role: 'user', content: [{ type: 'text', text: `Card ${CARD}` }] },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'send', input: { to: OTHER_EMAIL } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: `Sent to ${OTHER_EMAIL}` }] },
      ],
    };
    const before = upstream.received.length;
    const { status } = await post('llm', Buffer.from(JSON.stringify(anthropic)));
    expect(status).toBe(200);
    expect(upstream.received).toHaveLength(before + 1);
    // The upstream checks that Content-Length is the length of what it got.
    const sent = JSON.parse(upstream.received.at(-1)!) as Json;
    expect(sent.system).toBe('Reply to <EMAIL_1>.');
    expect(sent.messages[0].content[0].text).toBe('Card <CREDIT_CARD_1>');
    expect(sent.messages[1].content[0].input).toEqual({ to: '<EMAIL_2>' });
    expect(sent.messages[2].content[0].content).toBe('Sent to <EMAIL_2>');
  });

  it('refuses a body over max_body with ERR_BODY_TOO_LARGE, forwarding nothing', async () => {
    const before = upstream.received.length;
    const big = Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `${'x'.repeat(4096)} ${EMAIL}` }] }));
    const { status, json } = await post('llm-small', big);
    expect(status).toBe(413);
    expect(json.error.code).toBe('ERR_BODY_TOO_LARGE');
    expect(upstream.received).toHaveLength(before);
  });

  it('refuses a body it cannot read (compressed, UTF-16) with ERR_REQUEST_UNMASKABLE rather than forward it unmasked', async () => {
    const before = upstream.received.length;
    const prompt = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: EMAIL }] });
    const gz = await post('llm', gzipSync(prompt), { 'content-encoding': 'gzip' });
    expect(gz.status).toBe(415);
    expect(gz.json.error.code).toBe('ERR_REQUEST_UNMASKABLE');
    const utf16 = await post('llm', Buffer.from(prompt, 'utf16le'), { 'content-type': 'application/json; charset=utf-16le' });
    expect(utf16.status).toBe(415);
    expect(utf16.json.error.code).toBe('ERR_REQUEST_UNMASKABLE');
    expect(upstream.received).toHaveLength(before);
  });
});

describe('configuration', () => {
  const base = { identity: { issuer: 'https://idp.example', audience: 'urn:sluice:gateway', cli_client_id: 'cli' } };
  const problems = (raw: unknown): string[] => {
    try {
      validateConfig(raw);
      return [];
    } catch (err) {
      return ((err as { details?: { problems?: string[] } }).details?.problems ?? []) as string[];
    }
  };
  const http = (masking: unknown) => ({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:9', allow_groups: ['g'], masking });

  it('reads masking: { response, request, style, restore } into the answer profiles and the request masking', () => {
    const cfg = validateConfig({ ...base, masking_profiles: { pii: { detectors: ['email'] } }, connections: [http({ response: ['pii'], request: ['pii'], style: 'placeholder', restore: true })] });
    const c = cfg.connections[0]!;
    expect(c.masking).toEqual(['pii']);
    expect(c.type === 'http' && c.request_masking).toEqual({ profiles: ['pii'], style: 'placeholder', restore: true });
  });

  it('refuses restore without placeholders, an unknown profile, and request masking on a tcp connection', () => {
    expect(problems({ ...base, masking_profiles: { pii: { detectors: ['email'] } }, connections: [http({ request: ['pii', 'nope'], restore: true })] })).toEqual([
      'connections[0].masking.request[1]: unknown masking profile "nope"',
      expect.stringContaining('connections[0].masking.restore: restore needs placeholders'),
    ]);
    const tcp = { name: 't', type: 'tcp', upstream: 'tcp://127.0.0.1:9', allow_groups: ['g'], masking: { request: ['pii'] } };
    expect(problems({ ...base, masking_profiles: { pii: { detectors: ['email'] } }, connections: [tcp] })).toEqual([
      'connections[0].masking.request: request masking is for http connections, not tcp',
    ]);
  });
});

describe('what is kept', () => {
  it('the recording holds the placeholders that went upstream, the originals only with record.request_body: raw; the logs hold neither', async () => {
    const { sdk } = await client('proxy', 'llm-raw');
    await sdk.chat.completions.create({ model: 'm', messages: MESSAGES });
    // Every exchange of `llm`: answered, streamed, and refused (a compressed and a UTF-16 body, kept by no record).
    const kept = await recordedRequests('llm');
    expect(kept.length).toBeGreaterThanOrEqual(3);
    for (const body of kept) {
      expect(body).toContain('<EMAIL_1>');
      for (const v of ORIGINALS) expect(body).not.toContain(v);
    }
    // A body refused for its size is not kept, nor the part of it that arrived after the limit.
    for (const body of await recordedRequests('llm-small')) expect(body).not.toContain(EMAIL);
    const raw = await recordedRequests('llm-raw');
    expect(raw.some((b) => b.includes(EMAIL) && b.includes(CARD))).toBe(true);

    // Nothing on disk holds a value in clear (recordings are sealed), nor a placeholder map.
    for (const file of await filesUnder(gw.storageDir)) {
      const bytes = await readFile(file);
      for (const v of ORIGINALS) expect(bytes.includes(v), `${file} holds ${v}`).toBe(false);
    }
    expect(logLines.length).toBeGreaterThan(0);
    for (const v of ORIGINALS) expect(logLines.join('\n')).not.toContain(v);
  });
});
