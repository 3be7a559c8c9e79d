/**
 * Policy and request masking, through a real gateway with fetch: a rule's `mask_request` masks the prompts
 * of the requests it matches (and no other), numbering on from the connection's placeholders; rules judge
 * the prompt as it will leave (`request.json`), the prompt as sent only through `request.raw_json`; and
 * `sluice mask test --request` shows, offline, what would leave and the placeholder map.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionJson, SessionListJson } from '../../shared/sessions-api.js';
import { validateConfig } from '../../server/config/load.js';
import { connectionSchema, type TcpConnectionConfig } from '../../server/config/schema.js';
import { createExchangeHandler } from '../../server/pipeline/run-exchange.js';
import { createTcpProtocol } from '../../server/protocols/tcp.js';
import { recordedEvents } from '../helpers/recorded-events.js';
import { runCliInProcess } from '../helpers/cli-in-process.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { listenOnLoopback } from '../helpers/loopback.js';

const gateways = gatewayFixture();

const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';

type Json = Record<string, any>;

/** An upstream that keeps each body it received and answers with the placeholders found in it. */
async function startUpstream(): Promise<{ url: string; received: string[]; close(): Promise<void> }> {
  const received: string[] = [];
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    received.push(body);
    const tokens = [...new Set(body.match(/<[A-Z_]+_\d+>/g) ?? [])];
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ echo: tokens.join(' ') }));
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
let upstream: Awaited<ReturnType<typeof startUpstream>>;
let alice: string;

/** Rules keyed on `probe` (a body field no profile masks), so each test picks the rule it proves. */
const POLICIES = [
  {
    name: 'sees-placeholders',
    action: 'deny',
    message: 'request.json holds the placeholder',
    when: 'has(request.json.probe) && request.json.probe == "masked" && request.json.messages[0].content.contains("<EMAIL_1>")',
  },
  {
    name: 'sees-original',
    action: 'deny',
    message: 'request.raw_json holds the address',
    when: `has(request.json.probe) && request.json.probe == "raw" && request.raw_json.messages[0].content.contains("${EMAIL}")`,
  },
  {
    // Written against the address: on a connection that masks prompts it never matches through request.json.
    name: 'address-in-json',
    action: 'deny',
    message: 'request.json holds the address',
    when: `has(request.json.probe) && request.json.probe == "leak" && request.json.messages[0].content.contains("${EMAIL}")`,
  },
  { name: 'cards-too', action: 'allow', mask_request: ['cards'], when: 'has(request.json.probe) && request.json.probe == "cards"' },
  { name: 'open', action: 'allow', when: 'true' },
];

beforeAll(async () => {
  upstream = await startUpstream();
  const connection = (name: string, more: Json) => ({ name, type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], ...more });
  gw = await gateways.start({
    config: {
      roles: { auditor: ['security'] },
      storage: { proxy_session_idle: '300ms' },
      masking_profiles: {
        'prompt-pii': { detectors: ['email'], style: 'placeholder' },
        cards: { detectors: ['credit_card'], style: 'placeholder' },
      },
      connections: [connection('llm', { masking: { request: ['prompt-pii'], restore: true } }), connection('plain', {})],
      policies: POLICIES,
    },
  });
  alice = await gw.token('alice');
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

/** A chat completion through the direct proxy; `probe` picks the rule. */
async function chat(connection: string, probe: string, content: string): Promise<{ status: number; json: Json; sent: string | undefined }> {
  const before = upstream.received.length;
  const res = await fetch(`${gw.url}/v1/proxy/${connection}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', probe, messages: [{ role: 'user', content }] }),
  });
  const json = (await res.json()) as Json;
  return { status: res.status, json, sent: upstream.received.length > before ? upstream.received.at(-1) : undefined };
}

describe('what policy sees of a masked prompt', () => {
  it('request.json is the prompt as it will leave: a rule on its placeholder matches', async () => {
    const r = await chat('llm', 'masked', `Write to ${EMAIL}.`);
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('ERR_POLICY_DENIED');
    expect(r.json.error.message).toBe('request.json holds the placeholder');
    expect(r.sent).toBeUndefined();
  });

  it('request.raw_json is the prompt as sent: a rule on the address matches only there', async () => {
    const raw = await chat('llm', 'raw', `Write to ${EMAIL}.`);
    expect(raw.status).toBe(403);
    expect(raw.json.error.message).toBe('request.raw_json holds the address');
    expect(raw.sent).toBeUndefined();
    // The same rule over request.json never sees the address: the request leaves, masked once, with the placeholder policy saw.
    const leak = await chat('llm', 'leak', `Write to ${EMAIL}.`);
    expect(leak.status).toBe(200);
    expect(JSON.parse(leak.sent!).messages[0].content).toBe('Write to <EMAIL_1>.');
    expect(leak.json.echo).toBe(EMAIL);
  });

  it('on a connection that masks no prompt, request.json and request.raw_json are the body as sent', async () => {
    const leak = await chat('plain', 'leak', `Write to ${EMAIL}.`);
    expect(leak.status).toBe(403);
    expect(leak.json.error.message).toBe('request.json holds the address');
    const raw = await chat('plain', 'raw', `Write to ${EMAIL}.`);
    expect(raw.status).toBe(403);
    expect(raw.json.error.message).toBe('request.raw_json holds the address');
  });
});

describe('mask_request on a policy rule', () => {
  it('masks the prompts of the requests the rule matches, and only those', async () => {
    const matched = await chat('plain', 'cards', `Card ${CARD}, mail ${EMAIL}.`);
    expect(matched.status).toBe(200);
    // The rule's profile alone: the card goes, the address (no profile of this connection masks it) stays.
    expect(JSON.parse(matched.sent!).messages[0].content).toBe(`Card <CREDIT_CARD_1>, mail ${EMAIL}.`);
    const other = await chat('plain', 'none', `Card ${CARD}, mail ${EMAIL}.`);
    expect(other.status).toBe(200);
    expect(JSON.parse(other.sent!).messages[0].content).toBe(`Card ${CARD}, mail ${EMAIL}.`);
  });

  it("adds to the connection's request profiles with its placeholders: both come back where the answer repeats them", async () => {
    const matched = await chat('llm', 'cards', `Card ${CARD}, mail ${EMAIL}.`);
    expect(matched.status).toBe(200);
    expect(JSON.parse(matched.sent!).messages[0].content).toBe('Card <CREDIT_CARD_1>, mail <EMAIL_1>.');
    // One placeholder map for both passes: the answer's two tokens are both restored.
    expect(matched.json.echo).toBe(`${CARD} ${EMAIL}`);
    const other = await chat('llm', 'none', `Card ${CARD}, mail ${EMAIL}.`);
    expect(JSON.parse(other.sent!).messages[0].content).toBe(`Card ${CARD}, mail <EMAIL_1>.`);
  });

  it('refuses a mask_request profile that does not exist', () => {
    const base = { identity: { issuer: 'https://idp.example', audience: 'urn:sluice:gateway', cli_client_id: 'cli' } };
    let problems: string[] = [];
    try {
      validateConfig({
        ...base,
        masking_profiles: { pii: { detectors: ['email'] } },
        policies: [{ name: 'r', action: 'allow', when: 'true', mask_request: ['pii', 'nope'] }],
      });
    } catch (err) {
      problems = ((err as { details?: { problems?: string[] } }).details?.problems ?? []) as string[];
    }
    expect(problems).toEqual(['policies[0].mask_request[1]: no masking profile is named "nope"']);
  });
});

/** The request bodies the recording keeps for `connection`, as the auditor reads them, once its sessions are sealed. */
async function recordedRequests(connection: string): Promise<string[]> {
  const headers = { authorization: `Bearer ${await gw.token('carol')}` };
  const deadline = Date.now() + 15_000;
  let sealed: SessionJson[] = [];
  for (;;) {
    const { sessions } = (await (await fetch(`${gw.url}/v1/sessions`, { headers })).json()) as SessionListJson;
    const mine = sessions.filter((x) => x.connection === connection);
    sealed = mine.filter((x) => x.status === 'closed');
    if (sealed.length > 0 && !mine.some((x) => x.status === 'open')) break;
    if (Date.now() > deadline) throw new Error(`no sealed session of ${connection} in time`);
    await sleep(100);
  }
  const bodies: string[] = [];
  for (const session of sealed) {
    const res = await fetch(`${gw.url}/v1/sessions/${session.id}/events`, { headers });
    for (const line of (await res.text()).trim().split('\n')) {
      const e = JSON.parse(line) as { type: string; payload?: string };
      if (e.type === 'exchange.request' && e.payload !== undefined) bodies.push(Buffer.from(e.payload, 'base64').toString('utf8'));
    }
  }
  return bodies;
}

describe('what is kept', () => {
  it('a prompt a rule refused after it was masked is recorded as it would have left, with its placeholders', async () => {
    const denied = await chat('llm', 'masked', `Write to ${EMAIL}.`);
    expect(denied.status).toBe(403);
    const kept = await recordedRequests('llm');
    expect(kept.some((b) => b.includes('"probe":"masked"') && b.includes('<EMAIL_1>'))).toBe(true);
    for (const body of kept) expect(body).not.toContain(EMAIL);
  });
});

async function listening(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

it('a rule with mask_request refuses a tcp stream, on the record, before connecting upstream', async () => {
  let upstreamAccepted = 0;
  const upstreamServer = createTcpServer((s) => (upstreamAccepted++, s.end()));
  const upstreamPort = await listening(upstreamServer);
  const exchange = createExchangeHandler({ policy: { decide: async () => ({ action: 'allow', rule: 'prompts', maskRequest: ['pii'] }) } });
  const protocol = createTcpProtocol({ exchange });
  const { recorder, events } = recordedEvents();
  const connection = connectionSchema.parse({ name: 'db', type: 'tcp', upstream: `tcp://127.0.0.1:${upstreamPort}`, allow_groups: ['ops'] }) as TcpConnectionConfig;
  const principal = { sub: 'alice', groups: ['ops'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
  const streams = createTcpServer({ allowHalfOpen: true }, (socket) =>
    protocol.handle(socket, { principal, connection, session: { id: 'ses_test', recorder }, clientAddress: '127.0.0.1' }),
  );
  const port = await listening(streams);
  try {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    socket.resume();
    // Refused streams are reset: 'close' is awaited on its own, since once() would reject on the reset's 'error'.
    await new Promise((resolve) => socket.on('close', resolve));
    expect(upstreamAccepted).toBe(0);
    expect(events).toMatchObject([
      { type: 'policy.decision', decision: { action: 'allow', rule: 'prompts' } },
      { type: 'exchange.request' },
      { type: 'exchange.error', code: 'ERR_MASKING_BLOCKED', message: 'Policy "prompts" asks for request masking, which tcp connection "db" cannot do' },
    ]);
  } finally {
    await protocol.close();
    await exchange.close();
    streams.close();
    upstreamServer.close();
  }
});

describe('sluice mask test --request', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-mask-request-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'sluice.yaml');
  writeFileSync(
    config,
    [
      'masking_profiles:',
      '  prompt-pii: { detectors: [email], style: placeholder }',
      '  cards: { detectors: [credit_card] }',
      'connections:',
      '  - name: llm',
      '    type: http',
      '    upstream: ${env:NOT_SET_HERE}',
      '    masking: { request: [prompt-pii, cards], style: placeholder }',
      '  - name: answers-only',
      '    type: http',
      '    upstream: http://127.0.0.1:9',
      '    masking: [cards]',
    ].join('\n'),
  );
  const prompt = join(dir, 'prompt.json');
  writeFileSync(prompt, JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `Mail ${EMAIL} and ${EMAIL}, card ${CARD}.` }] }));

  it("prints what would leave with a connection's request masking, and the placeholder map", async () => {
    const r = await runCliInProcess(['mask', 'test', '--request', '--connection', 'llm', '--config', config, prompt]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).messages[0].content).toBe('Mail <EMAIL_1> and <EMAIL_1>, card <CREDIT_CARD_1>.');
    expect(r.stderr).toContain(`<EMAIL_1>\t${EMAIL}\n`);
    expect(r.stderr).toContain(`<CREDIT_CARD_1>\t${CARD}\n`);
  });

  it('--json gives the output, the map and the counts; --mask-profile with the profile style writes [CREDIT_CARD]', async () => {
    const r = await runCliInProcess(['mask', 'test', '--request', '--mask-profile', 'prompt-pii', '--mask-profile', 'cards', '--json', '--config', config, prompt]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Json;
    expect(JSON.parse(out.output).messages[0].content).toBe('Mail <EMAIL_1> and <EMAIL_1>, card [CREDIT_CARD].');
    expect(out.placeholders).toEqual({ '<EMAIL_1>': EMAIL });
    expect(out.style).toBe('profile');
    expect(out.summary).toEqual([
      { entity: 'credit_card', rule: expect.any(String), count: 1 },
      { entity: 'email', rule: expect.any(String), count: 2 },
    ]);
  });

  it('refuses a connection without request masking, and --connection without --request', async () => {
    const none = await runCliInProcess(['mask', 'test', '--request', '--connection', 'answers-only', '--config', config, prompt]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('connection "answers-only" masks no request bodies');
    const stray = await runCliInProcess(['mask', 'test', '--connection', 'llm', '--mask-profile', 'cards', '--config', config, prompt]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('--connection and --style go with --request');
  });
});
