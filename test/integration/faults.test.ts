/**
 * The fault matrix on the data path: an upstream that resets mid-stream, one that goes silent after its
 * head, one that trickles, an identity provider that disappears after start, and clocks that disagree.
 * Each case asserts what the caller sees and what the recording holds for the exchange (read through the
 * sessions API, as an auditor reads it). A real gateway on 127.0.0.1, a real upstream socket, fetch.
 */
import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sessionDetailSchema, type ExchangeSummaryJson } from '../../shared/sessions-api.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { FOREIGN_KEY, signToken } from '../helpers/oidc.js';

/** One SSE event of a chat completion stream carrying `text`. */
function sseEvent(text: string): string {
  return `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: text } }] })}\n\n`;
}

/** The trickled answer: every byte of it is written alone, 50 ms apart. */
const TRICKLE = `${sseEvent('slow')}data: [DONE]\n\n`;

interface FaultyUpstream {
  readonly url: string;
  /** Requests received, by path. */
  readonly hits: Map<string, number>;
  close(): Promise<void>;
}

/**
 * Routes: `/sse-reset` (head, three events, then the socket is destroyed), `/sse-hang` (head and one
 * event, then nothing, ever), `/trickle` (TRICKLE, one byte every 50 ms), anything else 200 "ok".
 */
async function startFaultyUpstream(): Promise<FaultyUpstream> {
  const hits = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const sse = (res: ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  };
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    req.resume();
    if (path === '/sse-reset') {
      sse(res);
      for (const word of ['one', 'two', 'three']) res.write(sseEvent(word));
      const t = setTimeout(() => req.socket.destroy(), 100);
      timers.add(t);
      return;
    }
    if (path === '/sse-hang') {
      sse(res);
      res.write(sseEvent('first'));
      return;
    }
    if (path === '/trickle') {
      sse(res);
      let i = 0;
      const t = setInterval(() => {
        if (i < TRICKLE.length) res.write(TRICKLE[i]);
        i += 1;
        if (i >= TRICKLE.length) {
          clearInterval(t);
          res.end();
        }
      }, 50);
      timers.add(t);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    close: () =>
      new Promise((resolve) => {
        for (const t of timers) clearInterval(t);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('upstream faults on a streamed answer', () => {
  const gateways = gatewayFixture();
  let upstream: FaultyUpstream;
  let gw: TestGateway;
  let alice: string;
  let carol: string;

  beforeAll(async () => {
    upstream = await startFaultyUpstream();
    gw = await gateways.start({
      config: {
        connections: [
          // 1 s of silence from the upstream, before or after its head, ends the exchange.
          { name: 'faulty', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], response_timeout: '1s', record: { request_body: 'raw', response_body: 'raw' } },
        ],
      },
    });
    alice = await gw.token('alice');
    carol = await gw.token('carol');
  });

  afterAll(async () => {
    await upstream?.close();
  });

  /** A streamed call on the direct proxy: the status, what the caller read, and how the body ended. */
  async function streamed(path: string): Promise<{ status: number; text: string; ended: 'clean' | 'error' }> {
    const res = await fetch(`${gw.url}/v1/proxy/faulty${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return { status: res.status, text, ended: 'clean' };
        text += decoder.decode(value, { stream: true });
      }
    } catch {
      return { status: res.status, text, ended: 'error' };
    }
  }

  /** The recorded summary of the exchange on `path`, once the gateway has written its end. */
  async function recorded(path: string): Promise<ExchangeSummaryJson> {
    let found: ExchangeSummaryJson | undefined;
    await vi.waitFor(
      async () => {
        const sessions = (await gw.sessions()).filter((s) => s.connection === 'faulty');
        found = undefined;
        for (const s of sessions) {
          const res = await fetch(`${gw.url}/v1/sessions/${s.id}`, { headers: { authorization: `Bearer ${carol}` } });
          const detail = sessionDetailSchema.parse(await res.json());
          found ??= detail.exchanges?.find((x) => x.path === path && x.complete !== null && (x.error !== null || x.complete));
        }
        expect(found, `an ended exchange for ${path}`).toBeDefined();
      },
      { timeout: 10_000, interval: 100 },
    );
    return found!;
  }

  it('an upstream reset after three events: the caller gets those events and a broken stream, never a clean end; the recording names the cause', async () => {
    const r = await streamed('/sse-reset');

    expect(r.status).toBe(200);
    expect(r.text).toBe(sseEvent('one') + sseEvent('two') + sseEvent('three'));
    expect(r.ended).toBe('error');
    const x = await recorded('/sse-reset');
    expect(x).toMatchObject({ status: 200, complete: false, error: { code: 'ERR_UPSTREAM_UNAVAILABLE' } });
    expect(x.bytes_down).toBe(Buffer.byteLength(r.text));
    expect(upstream.hits.get('/sse-reset')).toBe(1);
  });

  it('an upstream silent after its head and one event: response_timeout ends the stream for the caller, and the recording says ERR_UPSTREAM_TIMEOUT', async () => {
    const r = await streamed('/sse-hang');

    expect(r.status).toBe(200);
    expect(r.text).toBe(sseEvent('first'));
    expect(r.ended).toBe('error');
    const x = await recorded('/sse-hang');
    expect(x).toMatchObject({ status: 200, complete: false, error: { code: 'ERR_UPSTREAM_TIMEOUT' } });
  });

  it('a trickle of one byte every 50 ms streams through whole, byte for byte, and is recorded complete', { timeout: 20_000 }, async () => {
    const r = await streamed('/trickle');

    expect(r).toEqual({ status: 200, text: TRICKLE, ended: 'clean' });
    const x = await recorded('/trickle');
    expect(x).toMatchObject({ status: 200, complete: true, error: null, bytes_down: Buffer.byteLength(TRICKLE) });
  });
});

describe('the identity provider unreachable after start', () => {
  const gateways = gatewayFixture();

  it('keeps verifying tokens under known keys from its cached JWKS, refuses an unknown kid, and /readyz reports the provider', async () => {
    const gw = await gateways.start();
    const me = async (token: string): Promise<{ status: number; code?: string }> => {
      const res = await fetch(`${gw.url}/v1/me`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await res.json()) as { error?: { code: string } };
      return { status: res.status, ...(body.error ? { code: body.error.code } : {}) };
    };
    // The first token makes the gateway fetch and cache the provider's keys.
    expect((await me(await gw.token('alice'))).status).toBe(200);
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(200);

    const { idp } = gateways;
    await idp.close();
    // The fixture closes its IdP again after the file; once is what this test is about.
    idp.close = async () => undefined;

    // A token the gateway has never seen (not in its verified-token cache), under the cached kid.
    expect(await me(await gw.token('bob', { jti: 'after-idp-left' }))).toEqual({ status: 200 });
    const unknownKid = await new jose.SignJWT(gateways.idp.claimsFor('alice'))
      .setProtectedHeader({ alg: 'RS256', kid: 'never-published' })
      .sign(await jose.importJWK(FOREIGN_KEY, 'RS256'));
    const refused = await me(unknownKid);
    expect([refused.status, refused.code]).toEqual([401, 'ERR_TOKEN_KEY_UNKNOWN']);
    await vi.waitFor(
      async () => {
        const res = await fetch(`${gw.url}/readyz`);
        expect(res.status).toBe(503);
        expect(await res.json()).toMatchObject({ status: 'unready', checks: { identity: { ok: false, code: 'ERR_IDP_UNAVAILABLE' } } });
      },
      { timeout: 15_000, interval: 250 },
    );
  });
});

describe('clock skew between the provider and the gateway', () => {
  const gateways = gatewayFixture();

  it('accepts iat and nbf a little in the future (within identity.clock_tolerance) and refuses either beyond it with ERR_TOKEN_CLAIMS', async () => {
    const gw = await gateways.start({ config: { identity: { clock_tolerance: '30s' } } });
    const now = Math.floor(gw.clock.now() / 1000);
    const me = async (claims: Record<string, unknown>): Promise<{ status: number; code?: string }> => {
      const token = await signToken(gateways.idp.signingKey, gateways.idp.claimsFor('alice', { exp: now + 300, ...claims }));
      const res = await fetch(`${gw.url}/v1/me`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await res.json()) as { error?: { code: string } };
      return { status: res.status, ...(body.error ? { code: body.error.code } : {}) };
    };

    expect(await me({ iat: now + 20, nbf: now + 20 })).toEqual({ status: 200 });
    expect(await me({ iat: now, nbf: now + 90 })).toEqual({ status: 401, code: 'ERR_TOKEN_CLAIMS' });
    expect(await me({ iat: now + 600 })).toEqual({ status: 401, code: 'ERR_TOKEN_CLAIMS' });
  });

  it('refuses a token whose exp passed more than the tolerance ago, and accepts one that passed within it', async () => {
    const gw = await gateways.start({ config: { identity: { clock_tolerance: '30s' } } });
    const now = Math.floor(gw.clock.now() / 1000);
    const call = async (exp: number): Promise<{ status: number; code?: string }> => {
      const token = await signToken(gateways.idp.signingKey, gateways.idp.claimsFor('alice', { iat: now - 600, exp }));
      const res = await fetch(`${gw.url}/v1/me`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await res.json()) as { error?: { code: string } };
      return { status: res.status, ...(body.error ? { code: body.error.code } : {}) };
    };
    expect(await call(now - 10)).toEqual({ status: 200 });
    expect(await call(now - 90)).toEqual({ status: 401, code: 'ERR_TOKEN_EXPIRED' });
  });
});
