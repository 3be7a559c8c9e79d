import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runCli, spawnCli } from '../helpers/cli-process.js';
import { gatewayFixture } from '../helpers/gateway.js';
import { freePort, portInUse } from '../helpers/loopback.js';
import { tempDir } from '../helpers/temp-dir.js';

const gateways = gatewayFixture();

async function configFile(text: string): Promise<string> {
  const dir = await tempDir('sluice-serve-');
  const file = join(dir, 'sluice.yaml');
  await writeFile(file, text);
  return file;
}

const identity = `identity:
  issuer: https://idp.example.com
  audience: sluice
  cli_client_id: sluice-cli
`;

describe('sluice serve', () => {
  it('lists every problem of an invalid config with its path and exits 2', async () => {
    const file = await configFile(`${identity}connections:
  - name: llm
    type: http
    upstream: http://127.0.0.1:8000
    allow_groups: [ml-eng]
  - name: broken
    type: http
    upstream: nope
    allow_groups: [ml-eng]
    max_body: -1
`);
    const r = await runCli(['serve', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('connections[1].upstream: must be an http:// or https:// URL');
    expect(r.stderr).toContain('connections[1].max_body:');
    expect(r.stderr).toContain('ERR_CONFIG_INVALID');
  });

  it('names a missing environment variable, never a secret value, and exits 2', async () => {
    const file = await configFile(`${identity}connections:
  - name: llm
    type: http
    upstream: http://127.0.0.1:8000
    headers: { authorization: "Bearer \${env:SLUICE_TEST_UPSTREAM_KEY}", x-other: "\${env:SLUICE_TEST_SECRET_SET}" }
    allow_groups: [ml-eng]
`);
    const r = await runCli(['serve', '--config', file], { env: { SLUICE_TEST_SECRET_SET: 'sk-VERY-SECRET' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('SLUICE_TEST_UPSTREAM_KEY');
    expect(r.stderr).toContain('ERR_CONFIG_ENV_MISSING');
    expect(r.stderr + r.stdout).not.toContain('sk-VERY-SECRET');
  });

  it('says which file it could not read', async () => {
    const r = await runCli(['serve', '--config', '/nonexistent/sluice.yaml']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Cannot read /nonexistent/sluice.yaml: ENOENT');
  });

  it('refuses a non-loopback address without TLS unless --insecure is given', async () => {
    const file = await configFile(`listen: 0.0.0.0:0\n${identity}`);
    const refused = await runCli(['serve', '--config', file]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('ERR_INSECURE_LISTEN');

    const child = spawnCli(['serve', '--config', file, '--insecure']);
    onTestFinished(() => child.kill('SIGKILL'));
    const logs = await child.waitForOutput(/sluice gateway ready/);
    expect(logs).toMatch(/without TLS/);
    child.kill('SIGTERM');
    expect(await child.exited).toBe(0);
  });

  it('validates without starting when --check is given', async () => {
    const r = await runCli(['serve', '--config', await configFile(identity), '--check']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/valid \(0 connections\)/);
    const conn = `connections:\n  - {name: llm, type: http, upstream: "http://127.0.0.1:9", allow_groups: [a]}\n`;
    const noKey = await runCli(['serve', '--config', await configFile(`${identity}${conn}`), '--check']);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('storage.master_key: is required when connections are configured');
  });

  it('serves /v1/info over TLS from cert and key files', async () => {
    const dir = await tempDir('sluice-tls-');
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    const openssl = spawn('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
    expect(await new Promise((r) => openssl.on('exit', r))).toBe(0);
    const file = await configFile(`listen: 127.0.0.1:0\npublic_url: https://sluice.example.com\ntls: { cert: ${cert}, key: ${key} }\n${identity}`);
    const child = spawnCli(['serve', '--config', file]);
    onTestFinished(() => child.kill('SIGKILL'));
    const logs = await child.waitForOutput(/sluice gateway ready/);
    const url = /"url":"(https:\/\/[^"]+)"/.exec(logs)![1]!;
    const curl = spawn('curl', ['-sS', '--cacert', cert, `${url}/v1/info`]);
    let body = '';
    curl.stdout.on('data', (d) => (body += d));
    expect(await new Promise((r) => curl.on('exit', r))).toBe(0);
    expect(JSON.parse(body)).toMatchObject({ issuer: 'https://idp.example.com', audience: 'sluice', public_url: 'https://sluice.example.com' });
    child.kill('SIGTERM');
    await child.exited;
  });

  it('logs JSON lines with a request id and never the bearer token', async () => {
    const file = await configFile(`listen: 127.0.0.1:0\n${identity}`);
    const child = spawnCli(['serve', '--config', file]);
    onTestFinished(() => child.kill('SIGKILL'));
    const logs = await child.waitForOutput(/sluice gateway ready/);
    const url = /"url":"(http:\/\/[^"]+)"/.exec(logs)![1]!;
    const res = await fetch(`${url}/v1/me`, { headers: { authorization: 'Bearer sk-secret-token-value-123', cookie: 'session=cookie-secret-456' } });
    expect(res.status).toBe(401);
    const requestId = res.headers.get('x-request-id')!;
    expect(requestId).toMatch(/^req_/);
    await child.waitForOutput(new RegExp(`"request_id":"${requestId}".*"statusCode":401`));
    child.kill('SIGTERM');
    await child.exited;
    const out = child.stdout() + child.stderr();
    expect(out).not.toContain('sk-secret-token-value-123');
    expect(out).not.toContain('cookie-secret-456');
    for (const line of child.stdout().trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    // One access line per request: what was asked, the answer and how long it took.
    const lines = child.stdout().trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const access = lines.filter((l) => l.request_id === requestId && (l.msg === 'incoming request' || l.msg === 'request completed'));
    expect(access).toHaveLength(1);
    expect(access[0]).toMatchObject({ msg: 'request completed', req: { method: 'GET', url: '/v1/me' }, res: { statusCode: 401 } });
    expect(access[0]!.responseTime).toEqual(expect.any(Number));
  });

  it('exits 2 naming the key id when restarted with another master key, and starts with a rotated ring that keeps the old one', async () => {
    const dir = await tempDir('sluice-keys-');
    const first = randomBytes(32).toString('base64');
    const storage = (keys: string): string => `listen: 127.0.0.1:0\n${identity}storage:\n  dir: ${join(dir, 'data')}\n${keys}`;
    const single = await configFile(storage('  master_key: ${env:SLUICE_MASTER_KEY}\n'));

    const original = spawnCli(['serve', '--config', single], { env: { SLUICE_MASTER_KEY: first } });
    onTestFinished(() => original.kill('SIGKILL'));
    await original.waitForOutput(/sluice gateway ready/);
    original.kill('SIGTERM');
    expect(await original.exited).toBe(0);

    const wrong = await runCli(['serve', '--config', single], { env: { SLUICE_MASTER_KEY: randomBytes(32).toString('base64') } });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('Master key "default" does not match');
    expect(wrong.stderr).toContain('ERR_MASTER_KEY_MISMATCH');

    const rotated = await configFile(storage('  master_keys:\n    - { id: k2, key: "${env:SLUICE_NEW_KEY}" }\n    - { id: default, key: "${env:SLUICE_MASTER_KEY}" }\n'));
    const child = spawnCli(['serve', '--config', rotated], { env: { SLUICE_MASTER_KEY: first, SLUICE_NEW_KEY: randomBytes(32).toString('base64') } });
    onTestFinished(() => child.kill('SIGKILL'));
    await child.waitForOutput(/sluice gateway ready/);
    child.kill('SIGTERM');
    expect(await child.exited).toBe(0);
    const canary = JSON.parse(await readFile(join(dir, 'data', 'key-canary.json'), 'utf8')) as { keys: Record<string, string> };
    expect(Object.keys(canary.keys).sort()).toEqual(['default', 'k2']);
  });

  it('checks the identity provider: --check and the start refuse an issuer that discovery spells otherwise (exit 2)', async () => {
    const { idp } = gateways;
    const slashed = await configFile(`listen: 127.0.0.1:0\nidentity:\n  issuer: ${idp.issuer}/\n  audience: ${idp.audience}\n  cli_client_id: sluice-cli\n`);
    const said =
      `identity.issuer is "${idp.issuer}/" but the discovery document at ${idp.issuer}/.well-known/openid-configuration names the issuer "${idp.issuer}" ` +
      '(they differ by a trailing slash): tokens carry the provider\'s value in "iss", so set identity.issuer to it exactly (ERR_IDP_MISMATCH)\n';
    const check = await runCli(['serve', '--config', slashed, '--check']);
    expect({ code: check.code, stdout: check.stdout, stderr: check.stderr }).toEqual({ code: 2, stdout: '', stderr: `sluice: ${said}` });
    const start = await runCli(['serve', '--config', slashed]);
    expect(start.code).toBe(2);
    expect(start.stderr).toBe(`sluice: ${said}`);
    expect(start.stdout).not.toMatch(/gateway ready/);

    const right = await configFile(`listen: 127.0.0.1:0\nidentity:\n  issuer: ${idp.issuer}\n  audience: ${idp.audience}\n  cli_client_id: sluice-cli\n`);
    const ok = await runCli(['serve', '--config', right, '--check']);
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('--check warns, naming the URL, when the identity provider cannot be reached, and the gateway starts unready', async () => {
    const port = await freePort();
    const file = await configFile(`listen: 127.0.0.1:0\nidentity:\n  issuer: http://127.0.0.1:${port}\n  audience: sluice\n  cli_client_id: sluice-cli\n`);
    const check = await runCli(['serve', '--config', file, '--check']);
    expect(check.code).toBe(0);
    expect(check.stderr).toBe(
      `sluice: warning: The identity provider cannot be reached: the discovery document at http://127.0.0.1:${port}/.well-known/openid-configuration cannot be fetched (ECONNREFUSED); the gateway would start unready\n`,
    );

    const child = spawnCli(['serve', '--config', file]);
    onTestFinished(() => child.kill('SIGKILL'));
    const logs = await child.waitForOutput(/sluice gateway ready/);
    const warning = logs.split('\n').map((l) => (l.startsWith('{') ? (JSON.parse(l) as Record<string, unknown>) : {})).find((l) => l.code === 'ERR_IDP_UNAVAILABLE');
    expect(warning).toMatchObject({ level: 40, idp_url: `http://127.0.0.1:${port}/.well-known/openid-configuration`, msg: expect.stringContaining('/readyz stays unready until it answers') });
    const url = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(logs)![1]!;
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: { identity: { message: string } } }).checks.identity.message).toContain(`http://127.0.0.1:${port}/.well-known/openid-configuration`);
    child.kill('SIGTERM');
    expect(await child.exited).toBe(0);
  });

  it('says which address is in use (ERR_LISTEN_FAILED, exit 2) and closes what it opened', async () => {
    const port = await portInUse();
    const dir = await tempDir('sluice-busy-');
    const file = await configFile(
      `listen: 127.0.0.1:${port}\n${identity}storage:\n  dir: ${join(dir, 'data')}\n  master_key: ${randomBytes(32).toString('base64')}\n` +
        'connections:\n  - {name: llm, type: http, upstream: "http://127.0.0.1:9", allow_groups: [a]}\n',
    );
    // The store, the recording and their timers were open when the listen failed: the process ends on its own only if they were closed.
    const r = await runCli(['serve', '--config', file], { timeoutMs: 20_000 });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`sluice: Cannot listen on 127.0.0.1:${port}: address in use: stop what holds it, or choose another address with --listen (EADDRINUSE) (ERR_LISTEN_FAILED)\n`);
    expect(r.stderr).not.toContain('ERR_INTERNAL');
    // Closing the recording seals its log with a signed checkpoint; a start abandoned without closing leaves none.
    expect((await readFile(join(dir, 'data', 'seals.checkpoints'))).length).toBeGreaterThan(0);
  });
});
