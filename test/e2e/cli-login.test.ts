import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS } from '../../shared/errors.js';
import { runCli, spawnCli, type CliResult } from '../helpers/cli-process.js';
import { gatewayFixture, until, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { approveDevice, clientCredentialsToken, denyDevice } from '../helpers/oidc.js';

/** A gateway with no connections: logging in and whoami need only its identity settings and roles. */
const STACK: TestGatewayOptions = {
  connections: () => [],
  config: { identity: { groups_claim: 'groups' }, roles: { admin: ['platform'], auditor: ['security'], reviewer: ['ml-eng', 'ml-leads'] } },
};
const gateways = gatewayFixture(STACK);

const temps: string[] = [];
let main: TestGateway;

// The binary runs dist/, which the e2e project's global setup compiles.
beforeAll(async () => {
  main = await gateways.start();
});

afterAll(async () => {
  await Promise.all(temps.map((d) => rm(d, { recursive: true, force: true })));
});

/** Waits out the second `saved` tokens were issued in (they live 45 s), so the next ones expire strictly later. */
async function nextSecond(saved: Record<string, unknown>): Promise<void> {
  await until(() => Math.floor(Date.now() / 1000) > (saved.expiresAt as number) - 45, 'the next second', 2000);
}

/** A fresh, empty config home; every CLI run below gets its own unless a test shares one on purpose. */
async function home(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-cli-login-'));
  temps.push(dir);
  return dir;
}

function cliEnv(configHome: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    XDG_CONFIG_HOME: configHome,
    SLUICE_TOKEN_STORE: 'file',
    SLUICE_DEVICE_POLL_INTERVAL: '0.2',
    SLUICE_TOKEN: undefined,
    SLUICE_GATEWAY: undefined,
    SLUICE_PROFILE: undefined,
    SLUICE_CLIENT_ID: undefined,
    SLUICE_CLIENT_SECRET: undefined,
    ...extra,
  };
}

const COMPLETE_URL = /(http:\/\/127\.0\.0\.1:\d+\/\S*user_code=\S+)/;

/** Run `sluice login` with the device flow and let `user` approve (or deny) from the URL it prints. */
async function deviceLogin(
  stack: TestGateway,
  configHome: string,
  action: { approveAs: string } | { deny: true },
  args: string[] = [],
): Promise<CliResult & { url: string }> {
  const cli = spawnCli(['login', '--gateway', stack.url, '--no-browser', ...args], { env: cliEnv(configHome) });
  try {
    await cli.waitForOutput(COMPLETE_URL, 20_000);
    const url = COMPLETE_URL.exec(cli.stderr())?.[1];
    expect(url, 'the complete verification URL is printed on stderr').toBeDefined();
    if ('approveAs' in action) await approveDevice({ verificationUriComplete: url!, accountId: action.approveAs });
    else await denyDevice({ verificationUriComplete: url! });
    const code = await cli.exited;
    return { code, signal: cli.child.signalCode, stdout: cli.stdout(), stderr: cli.stderr(), url: url! };
  } finally {
    cli.kill('SIGKILL');
  }
}

function tokenFile(configHome: string, profile = 'default'): string {
  return join(configHome, 'sluice', 'tokens', `${profile}.json`);
}

async function readTokens(configHome: string, profile = 'default'): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(tokenFile(configHome, profile), 'utf8')) as Record<string, unknown>;
}

function json(result: CliResult): Record<string, unknown> {
  try {
    return JSON.parse(result.stdout) as Record<string, unknown>;
  } catch {
    throw new Error(`expected JSON on stdout (exit ${result.code}):\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
  }
}

describe('sluice login (device code)', () => {
  it('logs alice in through the real binary, stores tokens 0600 in a 0700 dir, and whoami shows her groups and roles', async () => {
    const dir = await home();
    const login = await deviceLogin(main, dir, { approveAs: 'alice' }, ['--json']);
    expect(login.code, login.stderr).toBe(0);
    expect(login.stderr).toContain('user_code=');
    expect(login.stderr).toMatch(/Check that the page shows the code [A-Z]{4}-[A-Z]{4}/);
    expect(json(login)).toMatchObject({
      profile: 'default',
      gateway: main.url,
      issuer: main.idp.issuer,
      grant: 'device_code',
      client_id: 'sluice-cli',
      sub: 'alice',
      email: 'alice@example.com',
      groups: ['ml-eng'],
      roles: ['reviewer'],
      token_store: 'file',
    });

    const stored = await readTokens(dir);
    expect(stored).toMatchObject({ grant: 'device_code', clientId: 'sluice-cli' });
    expect(stored.accessToken).toEqual(expect.any(String));
    expect(stored.refreshToken).toEqual(expect.any(String));
    expect(stored.idToken).toEqual(expect.any(String));
    expect(stored.expiresAt).toBeGreaterThan(Date.now() / 1000 + 3000);
    if (process.platform !== 'win32') {
      expect((await stat(tokenFile(dir))).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'sluice', 'tokens'))).mode & 0o777).toBe(0o700);
      expect((await stat(join(dir, 'sluice'))).mode & 0o777).toBe(0o700);
    }
    expect(await readdir(join(dir, 'sluice', 'tokens'))).toEqual(['default.json']);
    const profiles = JSON.parse(await readFile(join(dir, 'sluice', 'profiles.json'), 'utf8'));
    expect(profiles.profiles.default).toMatchObject({
      gateway: main.url,
      issuer: main.idp.issuer,
      cliClientId: 'sluice-cli',
      audience: main.idp.audience,
      loginKind: 'device_code',
    });

    const whoami = await runCli(['whoami', '--json'], { env: cliEnv(dir) });
    expect(whoami.code, whoami.stderr).toBe(0);
    expect(json(whoami)).toMatchObject({
      sub: 'alice',
      email: 'alice@example.com',
      groups: ['ml-eng'],
      roles: ['reviewer'],
      gateway: main.url,
      token_source: 'stored',
      expires_at: stored.expiresAt,
    });

    const plain = await runCli(['whoami'], { env: cliEnv(dir) });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^subject:\s+alice$/m);
    expect(plain.stdout).toMatch(/^groups:\s+ml-eng$/m);
    expect(plain.stdout).toMatch(/^roles:\s+reviewer$/m);
    expect(plain.stdout).toContain(`gateway:  ${main.url}`);
  });

  it('remembers the gateway: a second login needs no --gateway, and --profile keeps logins apart', async () => {
    const dir = await home();
    expect((await deviceLogin(main, dir, { approveAs: 'alice' })).code).toBe(0);
    const cli = spawnCli(['--profile', 'bobs', 'login', '--no-browser'], { env: cliEnv(dir, { SLUICE_GATEWAY: main.url }) });
    await cli.waitForOutput(COMPLETE_URL);
    await approveDevice({ verificationUriComplete: COMPLETE_URL.exec(cli.stderr())![1]!, accountId: 'bob' });
    expect(await cli.exited, cli.stderr()).toBe(0);
    expect(cli.stdout()).toContain(`Logged in to ${main.url} as bob (bob@example.com) [profile bobs]`);

    const alice = json(await runCli(['whoami', '--json'], { env: cliEnv(dir) }));
    const bob = json(await runCli(['whoami', '--json', '--profile', 'bobs'], { env: cliEnv(dir) }));
    expect(alice.sub).toBe('alice');
    expect(bob).toMatchObject({ sub: 'bob', groups: ['ml-leads'], roles: ['reviewer'], profile: 'bobs' });
    expect((await readdir(join(dir, 'sluice', 'tokens'))).sort()).toEqual(['bobs.json', 'default.json']);
  });

  it('ends with the exit code of ERR_LOGIN_DENIED and a clear message when the user denies, saving nothing', async () => {
    const dir = await home();
    const result = await deviceLogin(main, dir, { deny: true });
    expect(result.code).toBe(ERRORS.ERR_LOGIN_DENIED.exit);
    expect(result.stderr).toMatch(/sluice: The login was denied at the identity provider \(access_denied.*\) \(ERR_LOGIN_DENIED\)/);
    expect(result.stdout).toBe('');
    await expect(stat(tokenFile(dir))).rejects.toThrow();
  });
});

describe('sluice login --client-credentials', () => {
  it('logs a CI client in from SLUICE_CLIENT_ID / SLUICE_CLIENT_SECRET; whoami shows its groups', async () => {
    const dir = await home();
    const env = cliEnv(dir, { SLUICE_CLIENT_ID: 'ci-bot', SLUICE_CLIENT_SECRET: main.idp.ciClient.clientSecret });
    const login = await runCli(['login', '--client-credentials', '--gateway', main.url, '--json'], { env });
    expect(login.code, login.stderr).toBe(0);
    expect(login.stderr).toBe(''); // no prompt, no URL: nothing for CI to wait on
    expect(json(login)).toMatchObject({ grant: 'client_credentials', client_id: 'ci-bot', sub: 'ci-bot', groups: ['ml-eng', 'ci'], roles: ['reviewer'] });
    expect(await readTokens(dir)).toMatchObject({ grant: 'client_credentials', clientId: 'ci-bot' });

    const whoami = await runCli(['whoami', '--json'], { env: cliEnv(dir) });
    expect(whoami.code, whoami.stderr).toBe(0);
    expect(json(whoami)).toMatchObject({ sub: 'ci-bot', groups: ['ml-eng', 'ci'], client_id: 'ci-bot' });
  });

  it('takes --client-id and --client-secret-file, and refuses a wrong secret with ERR_LOGIN_FAILED', async () => {
    const dir = await home();
    const secretFile = join(dir, 'secret');
    await writeFile(secretFile, `${main.idp.ciClient.clientSecret}\n`, { mode: 0o600 });
    const args = ['--profile', 'ci', 'login', '--client-credentials', '--client-id', 'ci-bot', '--client-secret-file', secretFile, '--gateway', main.url];
    const ok = await runCli(args, { env: cliEnv(dir) });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('as ci-bot');
    const profiles = JSON.parse(await readFile(join(dir, 'sluice', 'profiles.json'), 'utf8'));
    expect(profiles.profiles.ci).toMatchObject({ loginKind: 'client_credentials', clientSecretFile: secretFile });

    await writeFile(secretFile, 'wrong');
    const bad = await runCli(args, { env: cliEnv(dir) });
    expect(bad.code).toBe(ERRORS.ERR_LOGIN_FAILED.exit);
    expect(bad.stderr).toMatch(/rejected the client id or secret.*\(ERR_LOGIN_FAILED\)/);
  });

  it('without credentials is a usage error that names both ways to give them, and never prompts', async () => {
    const dir = await home();
    const result = await runCli(['login', '--client-credentials', '--gateway', main.url], { env: cliEnv(dir), input: '' });
    expect(result.code).toBe(ERRORS.ERR_USAGE.exit);
    expect(result.stderr).toContain('SLUICE_CLIENT_ID and SLUICE_CLIENT_SECRET');
    expect(result.stderr).toContain('--client-secret-file');
  });
});

describe('refresh near expiry', () => {
  // Tokens that live 45 s are inside the CLI's 60 s refresh window from the moment they are issued.
  const shortLived = gatewayFixture({ ...STACK, idp: { accessTokenTtlSeconds: 45 } });
  let short: TestGateway;
  beforeAll(async () => {
    short = await shortLived.start();
  });

  it('whoami refreshes a token that expires within 60 s, saves the new one, and the gateway accepts it', async () => {
    const dir = await home();
    expect((await deviceLogin(short, dir, { approveAs: 'alice' })).code).toBe(0);
    const before = await readTokens(dir);
    expect(before.expiresAt).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 45);

    await nextSecond(before);
    const whoami = await runCli(['whoami', '--json'], { env: cliEnv(dir) });
    expect(whoami.code, whoami.stderr).toBe(0);
    const after = await readTokens(dir);
    expect(after.accessToken).not.toBe(before.accessToken);
    expect(after.expiresAt as number).toBeGreaterThan(before.expiresAt as number);
    // whoami shows the gateway's reading of the new token (its `exp`); the CLI saved now + expires_in, which is a
    // second later when the answer crossed a second boundary on its way, so the two are compared as what they are.
    const exp = decodeJwt(after.accessToken as string).exp!;
    expect(json(whoami)).toMatchObject({ sub: 'alice', token_source: 'refreshed', expires_at: exp });
    expect(exp).toBeGreaterThan(decodeJwt(before.accessToken as string).exp!);
    expect(after.expiresAt as number).toBeGreaterThanOrEqual(exp);
  });

  it('a refused refresh is ERR_REFRESH_FAILED telling the user to log in again', async () => {
    const dir = await home();
    expect((await deviceLogin(short, dir, { approveAs: 'alice' })).code).toBe(0);
    const tokens = await readTokens(dir);
    await writeFile(tokenFile(dir), JSON.stringify({ ...tokens, refreshToken: 'not-a-refresh-token' }), { mode: 0o600 });
    const whoami = await runCli(['whoami'], { env: cliEnv(dir) });
    expect(whoami.code).toBe(ERRORS.ERR_REFRESH_FAILED.exit);
    expect(whoami.stderr).toMatch(/could not be renewed \(invalid_grant.*run `sluice login --gateway http:\/\/127\.0\.0\.1:\d+` again \(ERR_REFRESH_FAILED\)/);
  });

  it('renews a client-credentials token by running the grant again', async () => {
    const dir = await home();
    const env = cliEnv(dir, { SLUICE_CLIENT_ID: 'ci-bot', SLUICE_CLIENT_SECRET: short.idp.ciClient.clientSecret });
    expect((await runCli(['login', '--client-credentials', '--gateway', short.url], { env })).code).toBe(0);
    const before = await readTokens(dir);
    await nextSecond(before);
    const whoami = await runCli(['whoami', '--json'], { env });
    expect(whoami.code, whoami.stderr).toBe(0);
    expect(json(whoami)).toMatchObject({ sub: 'ci-bot', token_source: 'renewed' });
    expect((await readTokens(dir)).accessToken).not.toBe(before.accessToken);

    // Without the secret the token cannot be renewed, and the user is told how to fix it.
    const noSecret = await runCli(['whoami'], { env: cliEnv(dir) });
    expect(noSecret.code).toBe(ERRORS.ERR_REFRESH_FAILED.exit);
    expect(noSecret.stderr).toContain('set SLUICE_CLIENT_SECRET');
  });
});

describe('sluice logout', () => {
  it('revokes the refresh token at the IdP, removes the token file, and leaves the user logged out', async () => {
    const dir = await home();
    expect((await deviceLogin(main, dir, { approveAs: 'alice' })).code).toBe(0);
    const { refreshToken } = (await readTokens(dir)) as { refreshToken: string };

    const logout = await runCli(['logout', '--json'], { env: cliEnv(dir) });
    expect(logout.code, logout.stderr).toBe(0);
    const out = json(logout) as { removed: boolean; revocation: { refresh_token: { revoked: boolean }; access_token: { revoked: boolean } } };
    expect(out.removed).toBe(true);
    expect(out.revocation.refresh_token).toEqual({ revoked: true });
    await expect(stat(tokenFile(dir))).rejects.toThrow();
    expect(await readdir(join(dir, 'sluice', 'tokens'))).toEqual([]);

    // The revoked refresh token no longer works at the provider.
    const config = await client.discovery(new URL(main.idp.issuer), 'sluice-cli', undefined, client.None(), {
      execute: [client.allowInsecureRequests],
    });
    await expect(client.refreshTokenGrant(config, refreshToken, { resource: main.idp.audience })).rejects.toMatchObject({ error: 'invalid_grant' });

    const whoami = await runCli(['whoami'], { env: cliEnv(dir) });
    expect(whoami.code).toBe(ERRORS.ERR_NOT_LOGGED_IN.exit);

    const again = await runCli(['logout'], { env: cliEnv(dir) });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('Not logged in');
  });

  it('prints what it could and could not revoke', async () => {
    const dir = await home();
    expect((await deviceLogin(main, dir, { approveAs: 'alice' })).code).toBe(0);
    const logout = await runCli(['logout'], { env: cliEnv(dir) });
    expect(logout.code).toBe(0);
    expect(logout.stdout).toContain(`Logged out of ${main.url}: tokens removed from ${tokenFile(dir)}.`);
    expect(logout.stdout).toContain('refresh token: revoked at the identity provider');
    expect(logout.stdout).toMatch(/access token: (revoked at the identity provider|not revoked \(.+\))/);
  });
});

describe('token sources and errors', () => {
  it('SLUICE_TOKEN overrides the saved login, with SLUICE_GATEWAY or the profile gateway', async () => {
    const dir = await home();
    expect((await deviceLogin(main, dir, { approveAs: 'alice' })).code).toBe(0);
    const ciToken = await clientCredentialsToken({
      issuer: main.idp.issuer,
      clientId: 'ci-bot',
      clientSecret: main.idp.ciClient.clientSecret,
      audience: main.idp.audience,
    });
    const viaProfile = await runCli(['whoami', '--json'], { env: cliEnv(dir, { SLUICE_TOKEN: ciToken }) });
    expect(viaProfile.code, viaProfile.stderr).toBe(0);
    expect(json(viaProfile)).toMatchObject({ sub: 'ci-bot', token_source: 'env', gateway: main.url });

    const empty = await home();
    const viaEnv = await runCli(['whoami', '--json'], { env: cliEnv(empty, { SLUICE_TOKEN: ciToken, SLUICE_GATEWAY: main.url }) });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    expect(json(viaEnv)).toMatchObject({ sub: 'ci-bot', token_source: 'env' });

    const noGateway = await runCli(['whoami'], { env: cliEnv(empty, { SLUICE_TOKEN: ciToken }) });
    expect(noGateway.code).toBe(ERRORS.ERR_USAGE.exit);
    expect(noGateway.stderr).toContain('set SLUICE_GATEWAY');

    // The gateway's own verdict comes back with its code: a garbage token is not a JWT.
    const garbage = await runCli(['whoami', '--json'], { env: cliEnv(empty, { SLUICE_TOKEN: 'garbage', SLUICE_GATEWAY: main.url }) });
    expect(garbage.code).toBe(ERRORS.ERR_TOKEN_MALFORMED.exit);
    expect(JSON.parse(garbage.stderr)).toMatchObject({ error: { code: 'ERR_TOKEN_MALFORMED' } });
  });

  it('not logged in: whoami exits with ERR_NOT_LOGGED_IN; login without a gateway is a usage error', async () => {
    const dir = await home();
    const whoami = await runCli(['whoami'], { env: cliEnv(dir) });
    expect(whoami.code).toBe(ERRORS.ERR_NOT_LOGGED_IN.exit);
    expect(whoami.stderr).toBe('sluice: Not logged in: run `sluice login` (ERR_NOT_LOGGED_IN)\n');

    const login = await runCli(['login'], { env: cliEnv(dir) });
    expect(login.code).toBe(ERRORS.ERR_USAGE.exit);
    expect(login.stderr).toContain('pass --gateway URL (or set SLUICE_GATEWAY)');
  });

  it('refuses plain http to a gateway or issuer that is not on loopback', async () => {
    const dir = await home();
    const remote = await runCli(['login', '--gateway', 'http://gateway.example.com'], { env: cliEnv(dir) });
    expect(remote.code).toBe(ERRORS.ERR_USAGE.exit);
    expect(remote.stderr).toContain('Refusing plain http for the gateway http://gateway.example.com');

    // A gateway on loopback that names an http issuer elsewhere: discovery must not happen at all.
    const fake: Server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ issuer: 'http://idp.example.com', cli_client_id: 'sluice-cli', audience: 'urn:sluice:gateway', version: '0' }));
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    try {
      const gateway = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
      const result = await runCli(['login', '--gateway', gateway], { env: cliEnv(dir) });
      expect(result.code).toBe(ERRORS.ERR_USAGE.exit);
      expect(result.stderr).toContain('Refusing plain http for the issuer http://idp.example.com');
    } finally {
      await new Promise((r) => fake.close(r));
    }
  });

  it('an unreachable gateway is ERR_GATEWAY_UNREACHABLE naming the URL', async () => {
    const dir = await home();
    const idle = createServer();
    await new Promise<void>((r) => idle.listen(0, '127.0.0.1', r));
    const port = (idle.address() as AddressInfo).port;
    await new Promise((r) => idle.close(r)); // now nothing listens there
    const result = await runCli(['login', '--gateway', `http://127.0.0.1:${port}`], { env: cliEnv(dir) });
    expect(result.code).toBe(ERRORS.ERR_GATEWAY_UNREACHABLE.exit);
    expect(result.stderr).toContain(`The gateway cannot be reached at http://127.0.0.1:${port} (ECONNREFUSED)`);
  });

  it('documents the environment each command reads in --help', async () => {
    const dir = await home();
    const [login, whoami, logout] = await Promise.all(
      ['login', 'whoami', 'logout'].map((cmd) => runCli([cmd, '--help'], { env: cliEnv(dir) })),
    );
    for (const r of [login, whoami, logout]) expect(r!.code).toBe(0);
    for (const v of ['SLUICE_GATEWAY', 'SLUICE_CLIENT_ID', 'SLUICE_CLIENT_SECRET', 'SLUICE_DEVICE_POLL_INTERVAL', 'SLUICE_TOKEN_STORE', 'XDG_CONFIG_HOME']) {
      expect(login!.stdout).toContain(v);
    }
    expect(whoami!.stdout).toContain('SLUICE_TOKEN ');
    expect(logout!.stdout).toContain('SLUICE_CLIENT_SECRET');
  });
});
