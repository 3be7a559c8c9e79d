import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectionSchema, type TcpConnectionConfig } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { createExchangeHandler } from '../../server/pipeline/run-exchange.js';
import { createTcpProtocol } from '../../server/protocols/tcp.js';
import { recordedEvents } from '../helpers/recorded-events.js';

const alice: Principal = { sub: 'alice', groups: ['ops'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

describe('tcp connection whose request record cannot be written', () => {
  it('never dials the upstream and resets the caller', async () => {
    let upstreamConnections = 0;
    const upstreamPort = await listen(createServer((s) => (upstreamConnections++, s.on('error', () => undefined))));
    const connection = connectionSchema.parse({ name: 'db', type: 'tcp', upstream: `tcp://127.0.0.1:${upstreamPort}`, allow_groups: ['ops'], connect_timeout: '2s' }) as TcpConnectionConfig;
    // The recording refuses the request record, as a full disk would.
    const { recorder, events } = recordedEvents({
      onRecord: (event) => {
        if (event.type === 'exchange.request') throw Object.assign(new Error('ENOSPC: injected fault'), { code: 'ENOSPC' });
      },
    });
    const exchange = createExchangeHandler({});
    const protocol = createTcpProtocol({ exchange });
    onTestFinished(async () => {
      await protocol.close();
      await exchange.close();
    });
    const port = await listen(
      createServer({ allowHalfOpen: true }, (socket) => protocol.handle(socket, { principal: alice, connection, session: { id: 'ses_test', recorder }, clientAddress: '127.0.0.1' })),
    );

    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let reset = false;
    socket.on('error', (err: NodeJS.ErrnoException) => (reset = err.code === 'ECONNRESET'));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.resume();
    await new Promise((resolve) => socket.on('close', resolve));

    expect(reset).toBe(true);
    expect(socket.bytesRead).toBe(0);
    expect(events.map((e) => e.type)[0]).toBe('exchange.request');
    // Give a dial that should not happen the time to land before saying it did not.
    await new Promise((r) => setTimeout(r, 100));
    expect(upstreamConnections).toBe(0);
  });
});
