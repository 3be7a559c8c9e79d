import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { openLocalState } from '../../cli/auth/local-state.js';
import { runCliInProcess, type InProcessResult } from '../helpers/cli-in-process.js';
import { ERRORS } from '../../shared/errors.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { tempDir } from '../helpers/temp-dir.js';

const gateways = gatewayFixture();

function sluice(args: string[], env: NodeJS.ProcessEnv): Promise<InProcessResult> {
  return runCliInProcess(args, env);
}

async function configHome(): Promise<string> {
  const dir = await tempDir('sluice-gateway-option-');
  return dir;
}

/** A server that answers nothing useful and counts what reaches it: where a token must never go. */
async function elsewhere(): Promise<{ url: string; requests: string[] }> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`);
    res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** A saved login for `profile` at the test gateway, as `sluice login` leaves it (file token store). */
async function savedLogin(gw: TestGateway, home: string, profile: string, tokens: { accessToken: string; refreshToken?: string; expiresAt: number }): Promise<NodeJS.ProcessEnv> {
  const env = { XDG_CONFIG_HOME: home, SLUICE_TOKEN_STORE: 'file' };
  const state = await openLocalState({ env });
  await state.profiles.set(profile, { gateway: gw.url, issuer: gw.idp.issuer, audience: gw.idp.audience, cliClientId: gw.idp.cliClientId, loginKind: 'device_code' });
  await state.store.set(profile, { ...tokens, grant: 'device_code', clientId: gw.idp.cliClientId });
  return env;
}

describe('--gateway on every client command', () => {
  it('is accepted by each command that calls a gateway, and names the gateway for SLUICE_TOKEN', async () => {
    const gw = await gateways.start();
    const dead = await elsewhere();
    const home = await configHome();
    // SLUICE_GATEWAY names another server: --gateway wins, as the README's environment table says.
    const env = (token: string): NodeJS.ProcessEnv => ({ XDG_CONFIG_HOME: home, SLUICE_TOKEN_STORE: 'file', SLUICE_TOKEN: token, SLUICE_GATEWAY: dead.url });
    const alice = env(await gw.token('alice'));
    const carol = env(await gw.token('carol'));
    const runs: Array<[string[], NodeJS.ProcessEnv]> = [
      [['whoami', '--json', '--gateway', gw.url], alice],
      [['connections', '--gateway', gw.url], alice],
      [['sessions', 'list', '--json', '--gateway', gw.url], carol],
      [['sessions', '--gateway', gw.url, 'list'], carol],
      [['review', 'list', '--gateway', gw.url], alice],
      [['access', 'list', '--gateway', gw.url], alice],
      [['audit', 'checkpoints', '--gateway', gw.url], carol],
    ];
    for (const [args, e] of runs) {
      const r = await sluice(args, e);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
    }
    // Reaching the gateway is what counts here: it answers that it has no such session.
    const replay = await sluice(['replay', `ses_${'0'.repeat(32)}`, '--json', '--gateway', gw.url], carol);
    expect({ code: replay.code, stderr: replay.stderr }).toEqual({ code: ERRORS.ERR_NOT_FOUND.exit, stderr: expect.stringContaining('"code":"ERR_NOT_FOUND"') });
    const whoami = await sluice(['whoami', '--json', '--gateway', gw.url], alice);
    expect(JSON.parse(whoami.stdout)).toMatchObject({ sub: 'alice', gateway: gw.url, token_source: 'env' });
    expect(dead.requests).toEqual([]);
    // Where it does not belong it is still refused: login has its own, serve and mask take none.
    expect((await sluice(['mask', 'test', '--gateway', gw.url, '-'], alice)).code).toBe(ERRORS.ERR_USAGE.exit);
  });

  it("with a saved login, takes the profile's own gateway and never sends its token to another", async () => {
    const gw = await gateways.start();
    const other = await elsewhere();
    const home = await configHome();
    const token = await gw.token('alice');
    const env = await savedLogin(gw, home, 'default', { accessToken: token, expiresAt: Math.floor(Date.now() / 1000) + 300 });

    const same = await sluice(['whoami', '--json', '--gateway', `${gw.url}/`], env);
    expect(same.code, same.stderr).toBe(0);
    expect(JSON.parse(same.stdout)).toMatchObject({ sub: 'alice', gateway: gw.url, token_source: 'stored' });

    const refused = await sluice(['whoami', '--gateway', other.url], env);
    expect(refused.code).toBe(ERRORS.ERR_USAGE.exit);
    expect(refused.stderr).toBe(
      `sluice: Profile "default" is logged in to ${gw.url}, not ${other.url} (given by --gateway or SLUICE_GATEWAY); its token is not sent to another gateway. ` +
        `Leave --gateway out, or log in there under a profile of its own: \`sluice --profile NAME login --gateway ${other.url}\` (ERR_USAGE)\n`,
    );
    expect(other.requests).toEqual([]);
  });

  it('names the exact command to log in again when a refresh is refused: profile, gateway and all', async () => {
    const gw = await gateways.start();
    const home = await configHome();
    // Expired, with a refresh token the provider never issued: the provider refuses the refresh (invalid_grant).
    const env = await savedLogin(gw, home, 'bob', { accessToken: await gw.token('bob'), refreshToken: 'not-a-refresh-token', expiresAt: Math.floor(Date.now() / 1000) - 10 });
    const r = await sluice(['--profile', 'bob', 'whoami'], env);
    expect(r.code).toBe(ERRORS.ERR_REFRESH_FAILED.exit);
    expect(r.stderr).toMatch(/^sluice: The login could not be renewed \(invalid_grant[^\n]*\): run `sluice --profile bob login --gateway http:\/\/127\.0\.0\.1:\d+` again \(ERR_REFRESH_FAILED\)\n$/);
    expect(r.stderr).toContain(`--gateway ${gw.url}\``);
  });
});
