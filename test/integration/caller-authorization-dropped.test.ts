/**
 * The caller's own `Authorization` header never reaches the upstream: not through `/v1/proxy` (where it
 * carries the caller's sluice token), not through a tunnel (where it is whatever the local client sent),
 * on a connection that injects its own credential and on one that injects none. Asserted at the upstream,
 * on the header lines as they arrived.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { gatewayFixture, httpOver, openClientMux, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();

const INJECTED = 'Bearer sk-injected-by-the-gateway';
const CALLER_SECRET = 'Bearer sk-the-callers-own-key';

/**
 * An upstream that keeps each request's raw header lines: Node's parsed headers keep only the first of
 * several `Authorization` lines, which would hide a second one sent beside the injected credential.
 */
async function startRawHeaderUpstream(): Promise<{ url: string; requests: Array<{ url: string; rawHeaders: string[] }> }> {
  const requests: Array<{ url: string; rawHeaders: string[] }> = [];
  const server = http.createServer((req, res) => {
    requests.push({ url: req.url ?? '', rawHeaders: req.rawHeaders });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  server.on('connection', (socket) => onTestFinished(() => void socket.destroy()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** The values of every `authorization` line of a request, in order. */
function authorizationLines(rawHeaders: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'authorization') out.push(rawHeaders[i + 1]!);
  return out;
}

async function start(): Promise<{ gw: TestGateway; upstream: Awaited<ReturnType<typeof startRawHeaderUpstream>> }> {
  const upstream = await startRawHeaderUpstream();
  const gw = await gateways.start({
    connections: () => [
      { name: 'injected', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], headers: { authorization: INJECTED } },
      { name: 'plain', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'] },
    ],
  });
  return { gw, upstream };
}

/** One request through /v1/proxy, authenticated by the caller's token in its Authorization header. */
function viaProxy(gw: TestGateway, connection: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${gw.url}/v1/proxy/${connection}/v1/models`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe("the caller's Authorization header", () => {
  for (const connection of ['injected', 'plain'] as const) {
    const expected = connection === 'injected' ? [INJECTED] : [];

    it(`never reaches the upstream through /v1/proxy (connection ${connection}: the upstream sees ${connection === 'injected' ? 'only the injected credential' : 'none'})`, async () => {
      const { gw, upstream } = await start();
      const token = await gw.token('alice');

      expect(await viaProxy(gw, connection, token)).toBe(200);

      expect(upstream.requests).toHaveLength(1);
      const raw = upstream.requests[0]!.rawHeaders;
      expect(authorizationLines(raw)).toEqual(expected);
      expect(raw.join('\n')).not.toContain(token);
    });

    it(`never reaches the upstream through a tunnel (connection ${connection}), however many Authorization lines the local client sends`, async () => {
      const { gw, upstream } = await start();
      const token = await gw.token('alice');
      const tunnel = await openClientMux(gw.tunnelUrl(connection), token);

      const one = await httpOver(() => tunnel.mux.openStream({ client: 'test' }), { path: '/v1/models', headers: { authorization: CALLER_SECRET } });
      const two = await httpOver(() => tunnel.mux.openStream({ client: 'test' }), {
        path: '/v1/models',
        // Two Authorization lines: Node's client writes an array value as one line per value.
        headers: { authorization: [CALLER_SECRET, `Bearer ${token}`] as unknown as string },
      });

      expect([one.status, two.status]).toEqual([200, 200]);
      expect(upstream.requests).toHaveLength(2);
      for (const { rawHeaders } of upstream.requests) {
        expect(authorizationLines(rawHeaders)).toEqual(expected);
        expect(rawHeaders.join('\n')).not.toContain(CALLER_SECRET);
        expect(rawHeaders.join('\n')).not.toContain(token);
      }
    });
  }
});
