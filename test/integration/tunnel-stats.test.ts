import { describe, expect, it } from 'vitest';
import { liveLine } from '../../cli/tunnel/tunnel-status.js';
import { gatewayFixture, until } from '../helpers/gateway.js';
import { openLocalHttpTunnel } from '../helpers/local-http-tunnel.js';

const gateways = gatewayFixture();

describe('live counts of a tunnel', () => {
  it('counts the requests the gateway served and the ones that failed', async () => {
    const gw = await gateways.start();
    const { client, hello, listener, localToken, url: base } = await openLocalHttpTunnel(gw, 'llm');
    const headers = { authorization: `Bearer ${localToken}` };
    expect((await fetch(`${base}/v1/models`, { headers })).status).toBe(200);
    expect((await fetch(`${base}/v1/models`, { headers })).status).toBe(200);
    expect((await fetch(`${base}/v1/no-such-route`, { headers })).status).toBe(404);

    await until(() => client.exchangeStats.requests === 3 && client.exchangeStats.active === 0, 'the stats message');
    expect(client.exchangeStats).toEqual({ requests: 3, active: 0, errors: 1 });
    expect(liveLine({ client, listener, hello })).toMatch(/connections \d+ open \/ \d+ total · requests 3 \(1 failed\) · sent \d/);
  });
});
