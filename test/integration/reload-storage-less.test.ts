/**
 * A gateway started with no connections runs without storage (no master key, so nothing could be
 * recorded). A reload must not give it connections: they would carry traffic that is never recorded.
 */
import { describe, expect, it } from 'vitest';
import { gatewayFixture, modelConnection } from '../helpers/gateway.js';

const gateways = gatewayFixture();

describe('a reload adding connections to a gateway without storage', () => {
  it('is refused with ERR_CONFIG_INVALID, changes nothing, and nothing is forwarded', async () => {
    const gw = await gateways.start({ reloadable: true, connections: () => [], config: { storage: { master_key: undefined } } });
    const admin = await gw.token('bob', { groups: ['platform'] });
    const alice = await gw.token('alice');

    await gw.writeConfig({ connections: [modelConnection(gw.model)] });
    const reload = await fetch(`${gw.url}/v1/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    const body = (await reload.json()) as { error?: { code?: string; message?: string } };
    expect(reload.status).toBe(500);
    expect(body.error?.code).toBe('ERR_CONFIG_INVALID');
    expect(body.error?.message).toMatch(/storage\.master_key/);
    expect(body.error?.message).toMatch(/restart/);
    expect(gw.live.get().connections).toEqual([]);

    // The direct proxy knows no such connection, and the model server heard nothing.
    const call = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hello' }] }),
    });
    expect(call.status).toBe(404);
    expect(((await call.json()) as { error?: { code?: string } }).error?.code).toBe('ERR_CONNECTION_UNKNOWN');
    expect(gw.model.requests).toEqual([]);
    // The reload that fails changes nothing that a later valid one depends on.
    await gw.writeConfig({ connections: [] });
    const again = await fetch(`${gw.url}/v1/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    expect(again.status).toBe(200);
  });
});
