import { describe, expect, it, onTestFinished } from 'vitest';
import { refuseHttp, startLocalListener } from '../../cli/tunnel/local-listener.js';
import { TunnelClient } from '../../cli/tunnel/tunnel-client.js';
import { liveLine } from '../../cli/tunnel/tunnel-status.js';
import { gatewayFixture } from '../helpers/gateway.js';

const gateways = gatewayFixture();

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('live counts of a tunnel', () => {
  it('counts the requests the gateway served and the ones that failed', async () => {
    const gw = await gateways.start();
    const token = await gw.token('alice');
    const client = new TunnelClient({ gateway: gw.url, connection: 'llm', getToken: async () => ({ token }) });
    const hello = await client.start();
    const localToken = 'sl_local_tunnel-stats-test';
    const listener = await startLocalListener({ bind: '127.0.0.1', port: 0, traffic: { protocol: 'http', token: localToken }, openStream: (meta) => client.openStream(meta), refuse: refuseHttp });
    onTestFinished(async () => {
      client.close();
      await listener.close();
    });
    const base = `http://127.0.0.1:${listener.port}`;
    const headers = { authorization: `Bearer ${localToken}` };
    expect((await fetch(`${base}/v1/models`, { headers })).status).toBe(200);
    expect((await fetch(`${base}/v1/models`, { headers })).status).toBe(200);
    expect((await fetch(`${base}/v1/no-such-route`, { headers })).status).toBe(404);

    await until(() => client.exchangeStats.requests === 3 && client.exchangeStats.active === 0, 'the stats message');
    expect(client.exchangeStats).toEqual({ requests: 3, active: 0, errors: 1 });
    expect(liveLine({ client, listener, hello })).toMatch(/connections \d+ open \/ \d+ total · requests 3 \(1 failed\) · sent \d/);
  });
});
