/**
 * `sluice connect` (the real binary) across the life of its tunnel: a token that expired before the
 * connect, one that expires while connected and cannot be renewed, and a gateway restart under it.
 */
import { connect as netConnect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { spawnConnect } from '../helpers/cli-connect.js';
import { runCli } from '../helpers/cli-process.js';
import { gatewayFixture } from '../helpers/gateway.js';
import { tempDir } from '../helpers/temp-dir.js';

const gateways = gatewayFixture();

function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}

describe('tunnel lifetime: a token that is already expired', () => {
  // The verifier allows 30 s of clock tolerance, a tunnel none: were a token that expired seconds ago let
  // through the upgrade, `sluice connect` would print "ready", then flap between connected, 4401 and "The
  // gateway cannot be reached" until the token leaves the tolerance window, or exit 10 "Internal error:
  // TunnelMux needs an open WebSocket" when hello, error and close arrive in one read.
  it('sluice connect with a token that expired seconds ago exits 3 with ERR_TOKEN_EXPIRED and never reports ready', async () => {
    const gw = await gateways.start();
    const home = await tempDir('sluice-expired-');
    const expired = await gw.token('alice', { iat: unixNow() - 600, exp: unixNow() - 5 });

    const r = await runCli(['connect', 'llm', '--json'], {
      env: { SLUICE_TOKEN: expired, SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: home, SLUICE_TOKEN_STORE: 'file' },
      timeoutMs: 8000,
    });

    const output = `--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
    expect(r.code, output).toBe(3);
    expect(r.stdout, output).toBe('');
    expect(JSON.parse(r.stderr.trim().split('\n').at(-1)!)).toMatchObject({ error: { code: 'ERR_TOKEN_EXPIRED' } });
  });
});

describe('tunnel lifetime through sluice connect, with a token that cannot be renewed', () => {
  // Product bugs, seen together: with SLUICE_TOKEN, TunnelClient.reauth() gets the same token back and sends
  // it anyway; reauth_ok then re-arms the timer at max(1 s, exp - 60 s), so in the last minute the CLI prints
  // "login renewed" every second although nothing was renewed. At expiry the tunnel closes 4401 and the CLI
  // reconnects with the same token, which the gateway admits again for the verifier's 30 s clock tolerance
  // (see above). The CLI's own timers run on real time, so this waits for a real expiry: connected / 4401 / "cannot be reached" flapping instead of ending with ERR_TOKEN_EXPIRED.
  it('ends at the expiry with exit 3 ERR_TOKEN_EXPIRED and never reports the login renewed', { timeout: 20_000 }, async () => {
    const gw = await gateways.start();
    const home = await tempDir('sluice-expiring-');
    const exp = unixNow() + 4;
    const token = await gw.token('alice', { exp });

    const r = await runCli(['connect', 'llm', '--json'], {
      env: { SLUICE_TOKEN: token, SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: home, SLUICE_TOKEN_STORE: 'file' },
      timeoutMs: 12_000,
    });

    const output = `--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
    const events = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { event: string }).event);
    expect(events[0], output).toBe('ready');
    expect(events, output).not.toContain('reauthenticated');
    expect(r.code, output).toBe(3);
    expect(JSON.parse(r.stderr.trim().split('\n').at(-1)!), output).toMatchObject({ error: { code: 'ERR_TOKEN_EXPIRED' } });
  });
});

/** A raw HTTP/1.1 request on a new TCP connection to a local port: resolves with everything read until the end. */
function rawGet(port: number, path: string, localToken: string, onConnect?: () => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    let text = '';
    socket.on('connect', () => {
      onConnect?.();
      socket.write(`GET ${path} HTTP/1.1\r\nHost: llm\r\nAuthorization: Bearer ${localToken}\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (c: Buffer) => (text += c.toString('utf8')));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
}

describe('tunnel across a gateway restart', () => {
  it('sluice connect keeps its local port open, reconnects with backoff, and a request made during the outage completes after the restart', async () => {
    const gw = await gateways.start();
    const home = await tempDir('sluice-restart-');
    const { cli, ready, localPort } = await spawnConnect(['llm', '--port', '0'], {
      env: { SLUICE_TOKEN: await gw.token('alice'), SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: home, SLUICE_TOKEN_STORE: 'file' },
    });

    const before = await rawGet(localPort, '/v1/models', ready.local_token!);
    await gw.stopApp();
    await cli.waitForOutput(/"event":"disconnected"/);
    let acceptedDuringOutage = false;
    const duringOutage = rawGet(localPort, '/v1/models', ready.local_token!, () => (acceptedDuringOutage = true));
    // the shutdown and two reconnect attempts that failed against the closed port, each backing off longer
    await cli.waitForOutput(/(?:"event":"disconnected"[\s\S]*){3}/);
    const upstreamCallsBeforeRestart = gw.model.requests.length;
    await gw.startApp();
    await cli.waitForOutput(/"event":"connected"[^\n]*"reconnect":true/, 20_000);
    const pending = await duringOutage;
    const after = await rawGet(localPort, '/v1/models', ready.local_token!);
    cli.kill('SIGTERM');
    const exitCode = await cli.exited;

    expect(before).toMatch(/^HTTP\/1\.1 200 /);
    const events = cli
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { event: string; code?: number; reason?: string; retryInMs?: number });
    // the first drop is the gateway's shutdown (1001); then failed attempts back off
    expect(events.find((e) => e.event === 'disconnected')).toMatchObject({ code: 1001, reason: 'ERR_SHUTTING_DOWN' });
    const delays = events.filter((e) => e.event === 'disconnected').map((e) => e.retryInMs!);
    expect(delays.length).toBeGreaterThanOrEqual(2);
    // jittered exponential backoff: attempt n waits between half and all of 250 ms * 2^n, so never less than before
    for (let i = 1; i < delays.length; i++) expect(delays[i]!).toBeGreaterThanOrEqual(delays[i - 1]!);
    expect(delays.at(-1)!).toBeGreaterThan(250);
    expect(acceptedDuringOutage).toBe(true);
    // the request made during the outage waited in the CLI: nothing reached the model until the restart
    expect(upstreamCallsBeforeRestart).toBe(1);
    expect(pending).toMatch(/^HTTP\/1\.1 200 /);
    expect(pending).toContain('"demo-echo"');
    expect(after).toMatch(/^HTTP\/1\.1 200 /);
    expect(gw.model.requests).toHaveLength(3);
    expect(exitCode).toBe(0);
  });
});
