/**
 * HTTP/1.1 trailers through the real gateway: an upstream's chunked-response trailers reach an undici client
 * through the direct proxy and through a tunnel, masked like headers, and are kept in `exchange.end`; a
 * caller's `TE: trailers` reaches the upstream, other TE values do not.
 */
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client, request } from 'undici';
import { describe, expect, it, onTestFinished } from 'vitest';
import { gatewayFixture, openClientMux, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();

/** The credential the gateway injects; the upstream echoes it in a trailer, which must not reach the caller. */
const INJECTED = 'sk-trailer-test-0123456789abcdef';

/** An upstream answering with a chunked body and trailers; it remembers each request's TE header. */
async function startTrailerUpstream(): Promise<{ url: string; te: (string | undefined)[] }> {
  const te: (string | undefined)[] = [];
  const server: Server = createServer((req, res) => {
    te.push(req.headers.te as string | undefined);
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, grpc-status, x-debug' });
    res.write('hello ');
    res.addTrailers({ 'x-checksum': 'sha256=abc123', 'grpc-status': '0', 'x-debug': `called with ${req.headers.authorization ?? 'nothing'}` });
    res.end('world');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, te };
}

async function startGateway(upstream: string): Promise<TestGateway> {
  return gateways.start({
    connections: () => [{ name: 'api', type: 'http', upstream, allow_groups: ['ml-eng'], headers: { authorization: `Bearer ${INJECTED}` } }],
  });
}

/** The recorded events of a session, as an auditor reads them through the API. */
async function sessionEvents(gw: TestGateway, session: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${gw.url}/v1/sessions/${session}/events`, { headers: { authorization: `Bearer ${await gw.token('carol')}` } });
  expect(res.status).toBe(200);
  return (await res.text())
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** What the caller must read in the trailers: the upstream's, with the injected credential masked. */
function expectCallerTrailers(trailers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): void {
  expect(trailers).toMatchObject({ 'x-checksum': 'sha256=abc123', 'grpc-status': '0' });
  expect(String(trailers['x-debug'])).toMatch(/^called with \S/);
  expect(JSON.stringify(trailers)).not.toContain(INJECTED);
}

describe('trailers', () => {
  it('reach an undici client through /v1/proxy, and the exchange.end record', async () => {
    const upstream = await startTrailerUpstream();
    const gw = await startGateway(upstream.url);
    const res = await request(`${gw.url}/v1/proxy/api/v1/stream`, { headers: { authorization: `Bearer ${await gw.token('alice')}` } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('hello world');
    expectCallerTrailers(res.trailers);

    const session = res.headers['x-sluice-session'] as string;
    const end = (await sessionEvents(gw, session)).find((e) => e.type === 'exchange.end');
    expect(end).toMatchObject({ status: 200, complete: true, trailers: { 'x-checksum': 'sha256=abc123', 'grpc-status': '0' } });
    expect(JSON.stringify(end)).not.toContain(INJECTED);
  });

  it('reach an undici client through a tunnel, and the exchange.end record', async () => {
    const upstream = await startTrailerUpstream();
    const gw = await startGateway(upstream.url);
    const tunnel = await openClientMux(gw.tunnelUrl('api'), await gw.token('alice'));
    // Each connection undici opens is a tunnel stream, as the CLI's local port makes one per socket. Handed over
    // on a later tick: undici ignores a connection that arrives while it is still asking for one.
    const client = new Client('http://api.local', { connect: (_options, callback) => process.nextTick(callback, null, tunnel.mux.openStream() as never) });
    onTestFinished(() => client.close());
    const res = await client.request({ method: 'GET', path: '/v1/stream' });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('hello world');
    expectCallerTrailers(res.trailers);

    const end = (await sessionEvents(gw, tunnel.helloMessage.session_id)).find((e) => e.type === 'exchange.end');
    expect(end).toMatchObject({ status: 200, complete: true, trailers: { 'x-checksum': 'sha256=abc123', 'grpc-status': '0' } });
  });

  it('forwards the caller\'s TE: trailers upstream, and no other TE value', async () => {
    const upstream = await startTrailerUpstream();
    const gw = await startGateway(upstream.url);
    const headers = { authorization: `Bearer ${await gw.token('alice')}` };
    for (const te of ['trailers', 'gzip', 'deflate;q=0.5, Trailers']) {
      const res = await request(`${gw.url}/v1/proxy/api/v1/stream`, { headers: { ...headers, te } });
      await res.body.text();
    }
    await request(`${gw.url}/v1/proxy/api/v1/stream`, { headers }).then((r) => r.body.text());
    expect(upstream.te).toEqual(['trailers', undefined, 'trailers', undefined]);
  });
});
