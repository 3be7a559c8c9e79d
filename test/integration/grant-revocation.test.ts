/**
 * Revoking an access grant: `POST /v1/grants/:id/revoke` (and `sluice access revoke`) ends the grant at once;
 * the tunnels it let in close with ERR_GRANT_REVOKED on the gateway that holds them, the one the revocation
 * went through or another replica on the same PostgreSQL, long before the grant would have expired.
 */
import { once } from 'node:events';
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import type { GrantJson, ReviewJson } from '../../shared/reviews-api.js';
import { runCliInProcess } from '../helpers/cli-in-process.js';
import { gatewayFixture, modelConnection, openRawTunnel, refusedUpgrade, type TestGateway } from '../helpers/gateway.js';
import { postgresFixture } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp-dir.js';

const postgres = postgresFixture();
const gateways = gatewayFixture();

const VAULT = { name: 'vault', requires_grant: true, grant: { reviewers: ['ml-leads'], max_duration: '8h' } };

async function api<T>(gw: TestGateway, user: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${await gw.token(user as 'alice')}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** Alice asks for an hour on vault through `asked`; bob approves through `approver`: the grant. */
async function grantAlice(asked: TestGateway, approver: TestGateway = asked): Promise<GrantJson> {
  const requested = await api<ReviewJson>(asked, 'alice', 'POST', '/v1/grants', { connection: 'vault', duration: '1h', reason: 'incident 7' });
  expect(requested.status).toBe(201);
  const approved = await api<{ grant: GrantJson }>(approver, 'bob', 'POST', `/v1/reviews/${requested.body.id}/approve`, {});
  expect(approved.status).toBe(200);
  expect(approved.body.grant).toMatchObject({ sub: 'alice', connection: 'vault', active: true });
  return approved.body.grant;
}

function tunnelUrl(gw: TestGateway): string {
  return `${gw.url.replace('http', 'ws')}/v1/tunnel?connection=vault`;
}

/** A webhook receiver; `events` lists each delivery's `x-sluice-event` and body. */
async function webhookReceiver(): Promise<{ url: string; events: Array<{ type: string; body: Record<string, unknown> }> }> {
  const events: Array<{ type: string; body: Record<string, unknown> }> = [];
  const server = http.createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      events.push({ type: String(req.headers['x-sluice-event']), body: JSON.parse(body) as Record<string, unknown> });
      res.end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, events };
}

describe('revoking a grant on one gateway', () => {
  it('closes the holder\'s tunnel with ERR_GRANT_REVOKED, refuses new ones, and lets only reviewers and the holder revoke, once', async () => {
    const hook = await webhookReceiver();
    const gw = await gateways.start({
      connections: ({ model }) => [modelConnection(model), modelConnection(model, VAULT)],
      config: { approval: { webhooks: [{ url: hook.url, events: ['grant.revoked'], retries: 0 }] } },
    });
    const grant = await grantAlice(gw);
    expect(grant.id).toMatch(/^g_[0-9a-f]{24}$/);

    const tunnel = openRawTunnel(tunnelUrl(gw), await gw.token('alice'));
    await tunnel.hello;

    // Neither an unknown id nor someone outside the reviewers and the holder ends anything.
    const unknown = await api<{ error: { code: string } }>(gw, 'bob', 'POST', '/v1/grants/g_000000000000000000000000/revoke', {});
    expect(unknown).toMatchObject({ status: 404, body: { error: { code: 'ERR_NOT_FOUND' } } });
    const carol = await api<{ error: { code: string } }>(gw, 'carol', 'POST', `/v1/grants/${grant.id}/revoke`, { reason: 'not mine to end' });
    expect(carol).toMatchObject({ status: 403, body: { error: { code: 'ERR_FORBIDDEN' } } });
    const badBody = await api<{ error: { code: string } }>(gw, 'bob', 'POST', `/v1/grants/${grant.id}/revoke`, { reason: 'x', extra: 1 });
    expect(badBody).toMatchObject({ status: 400, body: { error: { code: 'ERR_BAD_REQUEST' } } });
    expect((await api<{ grants: GrantJson[] }>(gw, 'alice', 'GET', '/v1/grants')).body.grants[0]).toMatchObject({ id: grant.id, active: true });

    // A reviewer finds the grant among those they review, and revokes it.
    const reviewing = await api<{ grants: GrantJson[] }>(gw, 'bob', 'GET', '/v1/grants?reviewing=true');
    expect(reviewing.body.grants.map((g) => g.id)).toEqual([grant.id]);
    expect((await api<{ grants: GrantJson[] }>(gw, 'carol', 'GET', '/v1/grants?reviewing=true')).body.grants).toEqual([]);
    const revoked = await api<{ grant: GrantJson }>(gw, 'bob', 'POST', `/v1/grants/${grant.id}/revoke`, { reason: 'incident closed' });
    expect(revoked).toMatchObject({ status: 200, body: { grant: { id: grant.id, active: false } } });

    const closed = await tunnel.closed;
    expect(closed).toMatchObject({ code: 4403, reason: 'ERR_GRANT_REVOKED' });
    expect(tunnel.texts).toContainEqual(expect.objectContaining({ type: 'error', code: 'ERR_GRANT_REVOKED' }));

    const refused = await refusedUpgrade(tunnelUrl(gw), { authorization: `Bearer ${await gw.token('alice')}` });
    expect(refused.body.error?.code).toBe('ERR_GRANT_REQUIRED');
    const again = await api<{ error: { code: string } }>(gw, 'bob', 'POST', `/v1/grants/${grant.id}/revoke`, {});
    expect(again).toMatchObject({ status: 409, body: { error: { code: 'ERR_REVIEW_CONFLICT' } } });

    await vi.waitFor(() => expect(hook.events).toHaveLength(1), { timeout: 10_000 });
    expect(hook.events[0]).toMatchObject({
      type: 'grant.revoked',
      body: { type: 'grant.revoked', actor: { sub: 'bob' }, reason: 'incident closed', grant: { id: grant.id, sub: 'alice', active: false } },
    });
  });

  it('lets the holder give up their own grant, and keeps a tunnel open while another grant is in force', async () => {
    const gw = await gateways.start({ connections: ({ model }) => [modelConnection(model), modelConnection(model, VAULT)] });
    const first = await grantAlice(gw);
    const second = await grantAlice(gw);
    const tunnel = openRawTunnel(tunnelUrl(gw), await gw.token('alice'));
    await tunnel.hello;

    expect((await api(gw, 'alice', 'POST', `/v1/grants/${second.id}/revoke`, {})).status).toBe(200);
    // The first grant still lets alice in: her tunnel stays, and a new one opens.
    const another = openRawTunnel(tunnelUrl(gw), await gw.token('alice'));
    await another.hello;
    expect(tunnel.ws.readyState).toBe(tunnel.ws.OPEN);

    expect((await api(gw, 'alice', 'POST', `/v1/grants/${first.id}/revoke`, { reason: 'done' })).status).toBe(200);
    for (const t of [tunnel, another]) expect(await t.closed).toMatchObject({ code: 4403, reason: 'ERR_GRANT_REVOKED' });
  });

  it('`sluice access list` shows grant ids, and `sluice access revoke` ends one', async () => {
    const gw = await gateways.start({ connections: ({ model }) => [modelConnection(model), modelConnection(model, VAULT)] });
    const grant = await grantAlice(gw);
    const home = await tempDir('sluice-revoke-cli-');
    const env = async (user: 'alice' | 'bob' | 'carol'): Promise<NodeJS.ProcessEnv> => ({
      XDG_CONFIG_HOME: home,
      SLUICE_TOKEN_STORE: 'file',
      SLUICE_TOKEN: await gw.token(user),
      SLUICE_GATEWAY: gw.url,
    });

    const mine = await runCliInProcess(['access', 'list'], await env('alice'));
    expect(mine.code).toBe(0);
    expect(mine.stdout).toMatch(new RegExp(`vault\\s+active\\s+until .* ${grant.id}\\s+${grant.review_id}`));
    const reviewing = await runCliInProcess(['access', 'list', '--reviewing'], await env('bob'));
    expect(reviewing.stdout).toMatch(new RegExp(`${grant.id}\\s+${grant.review_id}\\s+alice@example.com`));

    const typo = await runCliInProcess(['access', 'revoke', 'r_123'], await env('bob'));
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('GRANT_ID is a grant id');
    const denied = await runCliInProcess(['access', 'revoke', grant.id], await env('carol'));
    expect(denied.code).toBe(4);
    expect(denied.stderr).toContain('ERR_FORBIDDEN');

    const done = await runCliInProcess(['access', 'revoke', grant.id, '--reason', 'incident closed', '--json'], await env('bob'));
    expect(done.code).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ grant: { id: grant.id, active: false } });
    const twice = await runCliInProcess(['access', 'revoke', grant.id], await env('bob'));
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('ERR_REVIEW_CONFLICT');
    expect((await refusedUpgrade(tunnelUrl(gw), { authorization: `Bearer ${await gw.token('alice')}` })).body.error?.code).toBe('ERR_GRANT_REQUIRED');
  });
});

describe('revoking a grant across replicas on PostgreSQL', () => {
  it('closes a tunnel on A within 2 s of a revocation through B', async () => {
    const database = await postgres.database();
    const connections = ({ model }: { model: { url: string } }) => [modelConnection(model), modelConnection(model, VAULT)];
    const replica = { heartbeat_interval: '10m', dead_after: '30m' };
    const a = await gateways.start({ connections, config: { storage: { database }, replica: { ...replica, id: 'a/0' } } });
    const b = await gateways.start({ connections, config: { storage: { database, master_key: a.masterKey }, replica: { ...replica, id: 'b/0' } } });

    const grant = await grantAlice(b);
    const tunnel = openRawTunnel(tunnelUrl(a), await a.token('alice'));
    await tunnel.hello;

    const revoked = await api<{ grant: GrantJson }>(b, 'bob', 'POST', `/v1/grants/${grant.id}/revoke`, { reason: 'incident closed' });
    expect(revoked.status).toBe(200);
    const after = Date.now();
    const closed = await tunnel.closed;
    expect(closed).toMatchObject({ code: 4403, reason: 'ERR_GRANT_REVOKED' });
    // The bound the task sets, generously: the grant itself had an hour left.
    expect(closed.at - after).toBeLessThan(2000);
    expect((await refusedUpgrade(tunnelUrl(a), { authorization: `Bearer ${await a.token('alice')}` })).body.error?.code).toBe('ERR_GRANT_REQUIRED');
  });
});
