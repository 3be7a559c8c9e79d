/**
 * A gateway draining with a tunnel open: the streamed answer in flight finishes on the old tunnel, the CLI
 * opens a new tunnel at once (here through a balancer that now points at another gateway) for new streams
 * without closing its side, and the drain ends as soon as the old tunnel's streams have.
 */
import { once } from 'node:events';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { TunnelClient, type TunnelEvent } from '../../cli/tunnel/tunnel-client.js';
import { drainAndClose } from '../../server/cluster/graceful-drain.js';
import { chatBody, gatewayFixture, httpOver, until } from '../helpers/gateway.js';

const gateways = gatewayFixture();

/** A TCP balancer whose backend can be switched: new connections go to the current one. */
async function switchableBalancer(initial: number): Promise<{ url: string; point(port: number): void }> {
  let target = initial;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: target });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(async () => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, point: (port) => void (target = port) };
}

describe('draining a gateway with tunnels open', () => {
  it('finishes the stream in flight, reconnects the CLI elsewhere at once, and ends the drain early', async () => {
    // 30 deltas 100 ms apart: an answer still streaming when the drain starts.
    const a = await gateways.start({ model: { chunks: 30, chunkDelayMs: 100 } });
    const b = await gateways.start();
    const balancer = await switchableBalancer(a.port);
    const token = await a.token('alice');
    const client = new TunnelClient({ gateway: balancer.url, connection: 'llm', getToken: async () => ({ token }) });
    const events: TunnelEvent[] = [];
    client.on('event', (e: TunnelEvent) => events.push(e));
    await client.start();
    onTestFinished(() => client.close());

    const first = await client.openStream({});
    const inFlight = httpOver(() => first, { method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chatBody('across the drain', true) });
    await until(() => a.model.requests.length > 0, 'the streamed request at the model');

    balancer.point(b.port);
    const drained = drainAndClose(a.app, { graceMs: 30_000 });

    // The CLI reconnects at once (through the balancer, to b) while the answer still streams from a.
    await until(() => events.some((e) => e.kind === 'connected' && e.reconnect), 'the new tunnel', 5000);
    const next = await client.openStream({});
    const answered = await httpOver(() => next, { method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chatBody('after the drain') });
    expect(answered.status).toBe(200);
    expect(b.model.requests.map((r) => r.body).join('')).toContain('after the drain');

    const streamed = await inFlight;
    expect(streamed.status).toBe(200);
    expect(streamed.body.toString()).toContain('[DONE]');
    // The old tunnel closed when its stream ended, so the drain did not wait out the grace.
    expect(await drained).toBe('drained');
  });
});
