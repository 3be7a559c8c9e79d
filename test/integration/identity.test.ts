import { createPublicKey, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';
import { beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../server/app.js';
import { startGateway } from '../../server/start-gateway.js';
import { createTokenVerifier } from '../../server/identity/token-verifier.js';
import { validateConfig } from '../../server/config/load.js';
import { gatewayFixture } from '../helpers/gateway.js';
import { clientCredentialsToken, FOREIGN_KEY, signToken, startTestIdp, type TestIdp } from '../helpers/oidc.js';
import { tempDir } from '../helpers/temp-dir.js';

const gateways = gatewayFixture();
let idp: TestIdp;
let app: FastifyInstance;

function gatewayConfig(issuer: string, audience: string, identity: Record<string, unknown> = {}, more: Record<string, unknown> = {}) {
  return validateConfig({
    listen: '127.0.0.1:0',
    identity: { issuer, audience, cli_client_id: 'sluice-cli', clock_tolerance: '5s', ...identity },
    roles: { admin: ['platform'], auditor: ['security'], reviewer: ['ml-leads'] },
    ...more,
  });
}

beforeAll(async () => {
  idp = gateways.idp;
  ({ app } = await gateways.start({ connections: () => [], config: { identity: { clock_tolerance: '5s' } } }));
});

/** Moves `Date` (what jose and the readiness cache time themselves by) `ms` forward for the rest of the test. */
function jumpDate(ms: number): void {
  vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
  vi.setSystemTime(Date.now() + ms);
  onTestFinished(() => void vi.useRealTimers());
}

const now = () => Math.floor(Date.now() / 1000);

function claims(overrides: Record<string, unknown> = {}) {
  return { iss: idp.issuer, aud: idp.audience, sub: 'alice', groups: ['ml-eng', 'security'], iat: now(), exp: now() + 300, ...overrides };
}

async function me(token?: string) {
  const res = await app.inject({ method: 'GET', url: '/v1/me', headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, body: res.json() as { error?: { code: string; message: string } } & Record<string, unknown>, headers: res.headers };
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

describe('identity', () => {
  it('serves public discovery at /v1/info', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/info' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ issuer: idp.issuer, cli_client_id: 'sluice-cli', audience: idp.audience, name: 'sluice', public_url: null });
    expect(res.headers['x-request-id']).toMatch(/^req_/);
  });

  it('accepts a token the provider issued and maps groups to roles', async () => {
    const token = await clientCredentialsToken({ issuer: idp.issuer, clientId: 'ci-bot', clientSecret: idp.ciSecret, audience: idp.audience });
    const { status, body } = await me(token);
    expect(status).toBe(200);
    expect(body).toMatchObject({ sub: 'ci-bot', groups: ['ml-eng', 'ci'], roles: [], issuer: idp.issuer });
  });

  it('maps configured groups to roles on a well-signed token', async () => {
    const { status, body } = await me(await signToken(idp.signingKey, claims()));
    expect(status).toBe(200);
    expect(body.roles).toEqual(['auditor']);
  });

  it('answers 401 ERR_AUTH_REQUIRED without a token, with a WWW-Authenticate header', async () => {
    const r = await me();
    expect(r.status).toBe(401);
    expect(r.body.error?.code).toBe('ERR_AUTH_REQUIRED');
    expect(r.headers['www-authenticate']).toMatch(/^Bearer /);
    expect((await me('')).body.error?.code).toBe('ERR_AUTH_REQUIRED');
  });

  const cases: Array<[string, () => Promise<string>, string]> = [
    ['garbage', async () => 'not-a-jwt', 'ERR_TOKEN_MALFORMED'],
    ['three garbage segments', async () => 'a.b.c', 'ERR_TOKEN_MALFORMED'],
    ['expired', () => signToken(idp.signingKey, claims({ exp: now() - 120, iat: now() - 600 })), 'ERR_TOKEN_EXPIRED'],
    ['wrong issuer', () => signToken(idp.signingKey, claims({ iss: 'https://evil.example.com' })), 'ERR_TOKEN_ISSUER'],
    ['wrong audience', () => signToken(idp.signingKey, claims({ aud: 'urn:other:service' })), 'ERR_TOKEN_AUDIENCE'],
    ['alg none', async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`, 'ERR_TOKEN_ALGORITHM'],
    [
      'HS256 signed with the public key',
      async () => {
        const pub = createPublicKey({ key: idp.signingKey as jose.JWK, format: 'jwk' } as never).export({ format: 'pem', type: 'spki' });
        return new jose.SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: idp.signingKey.kid }).sign(Buffer.from(pub));
      },
      'ERR_TOKEN_ALGORITHM',
    ],
    [
      'unknown kid',
      async () => new jose.SignJWT(claims()).setProtectedHeader({ alg: 'RS256', kid: 'not-published' }).sign(await jose.importJWK(FOREIGN_KEY, 'RS256')),
      'ERR_TOKEN_KEY_UNKNOWN',
    ],
    [
      'forged signature under a published kid',
      async () => new jose.SignJWT(claims()).setProtectedHeader({ alg: 'RS256', kid: idp.signingKey.kid }).sign(await jose.importJWK(FOREIGN_KEY, 'RS256')),
      'ERR_TOKEN_SIGNATURE',
    ],
    [
      'claims tampered after signing',
      async () => {
        const [h, , s] = (await signToken(idp.signingKey, claims())).split('.');
        return `${h}.${b64(claims({ groups: ['platform'] }))}.${s}`;
      },
      'ERR_TOKEN_SIGNATURE',
    ],
    ['no subject', () => signToken(idp.signingKey, claims({ sub: undefined })), 'ERR_TOKEN_CLAIMS'],
  ];

  it.each(cases)('rejects a %s token with 401 and its own code', async (_name, make, code) => {
    const r = await me(await make());
    expect(r.status).toBe(401);
    expect(r.body.error?.code).toBe(code);
    expect(r.body.error?.message).toBeTruthy();
  });

  it('gives every kind of bad token a distinct code', () => {
    const codes = cases.map(([, , c]) => c);
    expect(new Set(codes).size).toBeGreaterThanOrEqual(8);
  });

  it('is ready when the provider keys are reachable, and unready when they are not', async () => {
    const ok = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ok.statusCode).toBe(200);
    const lost = await buildApp({ config: gatewayConfig('http://127.0.0.1:1', idp.audience), logger: false });
    try {
      const res = await lost.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'unready', checks: { identity: { ok: false, code: 'ERR_IDP_UNAVAILABLE' } } });
      // What was tried and what went wrong, not a bare "fetch failed".
      expect(res.json().checks.identity.message).toBe(
        'The identity provider cannot be reached: the discovery document at http://127.0.0.1:1/.well-known/openid-configuration cannot be fetched (bad port)',
      );
      const token = await signToken(idp.signingKey, claims({ iss: 'http://127.0.0.1:1' }));
      const r = await lost.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });
      expect(r.statusCode).toBe(503);
      expect(r.json().error.code).toBe('ERR_IDP_UNAVAILABLE');
      expect(r.json().error.message).toContain('http://127.0.0.1:1/.well-known/openid-configuration');
      expect((await lost.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    } finally {
      await lost.close();
    }
  });
});

describe('key rotation at the provider', () => {
  it('refetches the JWKS for an unknown kid, so a rotated key is accepted without a restart', async () => {
    const first = await startTestIdp();
    const port = Number(new URL(first.issuer).port);
    const config = gatewayConfig(first.issuer, first.audience);
    // A short cooldown so the test need not wait out the default 30 s between JWKS fetches.
    const verifier = createTokenVerifier({ identity: config.identity, roles: config.roles, jwksCooldownMs: 2000 });
    const gw = await buildApp({ config, logger: false, verifier });
    let second: TestIdp | undefined;
    try {
      const c = () => ({ iss: first.issuer, aud: first.audience, sub: 'alice', groups: ['ml-eng'] });
      const call = async (t: string) => {
        const r = await gw.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${t}` } });
        return { status: r.statusCode, code: (r.json() as { error?: { code: string } }).error?.code };
      };
      expect((await call(await signToken(first.signingKey, c()))).status).toBe(200);
      // The provider restarts on the same address with a new key first and the old one still published.
      await first.close();
      const rotated = FOREIGN_KEY;
      second = await startTestIdp({ port, signingKeys: [rotated, first.signingKey] });
      expect(second.issuer).toBe(first.issuer);
      const rotatedToken = await signToken(rotated, c());
      // Within the cooldown the key set is not fetched again: the new kid is unknown for now.
      expect(await call(rotatedToken)).toEqual({ status: 401, code: 'ERR_TOKEN_KEY_UNKNOWN' });
      jumpDate(2100);
      expect((await call(rotatedToken)).status).toBe(200);
      expect((await call(await signToken(first.signingKey, c()))).status).toBe(200);
    } finally {
      await gw.close();
      await second?.close();
    }
  });
});

describe('a connection the provider drops', () => {
  /**
   * A provider that cuts the connection under the first requests for discovery and the key set, without
   * answering, as a restarted provider or a load balancer closing idle keep-alive connections does.
   */
  async function droppingProvider(drops: { discovery: number; jwks: number }) {
    const asked = { discovery: 0, jwks: 0 };
    const url = await fakeProvider((path, base) => {
      if (path === '/.well-known/openid-configuration') {
        return ++asked.discovery <= drops.discovery ? 'drop' : { status: 200, body: { issuer: base, jwks_uri: `${base}/jwks` } };
      }
      return ++asked.jwks <= drops.jwks ? 'drop' : { status: 200, body: idp.idp.publicJwks() };
    });
    const gw = await buildApp({ config: gatewayConfig(url, idp.audience), logger: false });
    onTestFinished(() => gw.close());
    const token = await signToken(idp.signingKey, claims({ iss: url }));
    const res = await gw.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });
    return { url, asked, status: res.statusCode, error: (res.json() as { error?: { code: string; message: string } }).error };
  }

  it('accepts the token when discovery and the key set each fail once on a dropped connection', async () => {
    const { status, error, asked } = await droppingProvider({ discovery: 1, jwks: 1 });
    expect(error).toBeUndefined();
    expect(status).toBe(200);
    expect(asked).toEqual({ discovery: 2, jwks: 2 });
  });

  it('answers 503 ERR_IDP_UNAVAILABLE naming the JWKS when the key set fails twice in a row, and tries no more', async () => {
    const { url, status, error, asked } = await droppingProvider({ discovery: 0, jwks: Infinity });
    expect(status).toBe(503);
    expect(error).toEqual({
      code: 'ERR_IDP_UNAVAILABLE',
      message: `The identity provider cannot be reached: the JWKS at ${url}/jwks cannot be fetched (fetch failed)`,
    });
    expect(asked).toEqual({ discovery: 1, jwks: 2 });
  });
});

/** A provider that serves what the test says at discovery and JWKS, on a real port; `'drop'` closes the connection unanswered. */
async function fakeProvider(answer: (path: string, base: string) => { status: number; body: unknown } | 'drop'): Promise<string> {
  const server: Server = createServer((req, res) => {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const answered = answer(req.url ?? '/', base);
    if (answered === 'drop') return void req.socket.destroy();
    const { status, body } = answered;
    res.writeHead(status, { 'content-type': 'application/json' }).end(typeof body === 'string' ? body : JSON.stringify(body));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function startError(config: ReturnType<typeof gatewayConfig>): Promise<{ code?: string; message: string }> {
  try {
    const gw = await startGateway({ config, logger: false });
    await gw.close();
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
  throw new Error('expected the start to be refused');
}

describe('the identity provider checked at start', () => {
  it('refuses to start with an issuer that differs from discovery by a trailing slash, naming both', async () => {
    const slashed = `${idp.issuer}/`;
    const refused = await startError(gatewayConfig(slashed, idp.audience));
    expect(refused.code).toBe('ERR_IDP_MISMATCH');
    expect(refused.message).toBe(
      `identity.issuer is "${slashed}" but the discovery document at ${idp.issuer}/.well-known/openid-configuration names the issuer "${idp.issuer}" ` +
        '(they differ by a trailing slash): tokens carry the provider\'s value in "iss", so set identity.issuer to it exactly',
    );
  });

  it('refuses a provider with no key for identity.algorithms, naming the keys it has', async () => {
    const refused = await startError(gatewayConfig(idp.issuer, idp.audience, { algorithms: ['ES256', 'EdDSA'] }));
    expect(refused.code).toBe('ERR_IDP_MISMATCH');
    expect(refused.message).toMatch(/^The JWKS at http:\/\/127\.0\.0\.1:\d+\/\S+ has no signing key for identity\.algorithms \(ES256, EdDSA\); it publishes kid "[^"]+" \(RS256\)$/);
  });

  it('refuses an empty key set and a discovery document the provider does not serve', async () => {
    const empty = await fakeProvider((path, base) =>
      path === '/.well-known/openid-configuration' ? { status: 200, body: { issuer: base, jwks_uri: `${base}/jwks` } } : { status: 200, body: { keys: [] } },
    );
    expect(await startError(gatewayConfig(empty, 'a'))).toEqual({ code: 'ERR_IDP_MISMATCH', message: `The JWKS at ${empty}/jwks publishes no keys` });
    const missing = await fakeProvider(() => ({ status: 404, body: { error: 'not found' } }));
    expect(await startError(gatewayConfig(`${missing}/realms/ml`, 'a'))).toEqual({
      code: 'ERR_IDP_MISMATCH',
      message: `The discovery document at ${missing}/realms/ml/.well-known/openid-configuration answered HTTP 404 (is identity.issuer "${missing}/realms/ml" the provider's issuer URL?)`,
    });
  });

  it('starts unready, naming the URL, when the provider cannot be reached, and turns ready once it answers', async () => {
    let up = false;
    const provider = await fakeProvider((path, base) => {
      if (!up) return { status: 503, body: 'down for maintenance' };
      return path === '/.well-known/openid-configuration' ? { status: 200, body: { issuer: base, jwks_uri: `${base}/jwks` } } : { status: 200, body: idp.idp.publicJwks() };
    });
    const dir = await tempDir('sluice-idp-down-');
    const gw = await startGateway({ config: gatewayConfig(provider, 'a', {}, { storage: { dir, master_key: randomBytes(32).toString('base64') } }), logger: false });
    onTestFinished(() => gw.close());
    const unready = await fetch(`${gw.url}/readyz`);
    expect(unready.status).toBe(503);
    expect(((await unready.json()) as { checks: { identity: unknown } }).checks.identity).toEqual({
      ok: false,
      code: 'ERR_IDP_UNAVAILABLE',
      message: `The identity provider cannot be reached: the discovery document at ${provider}/.well-known/openid-configuration answered HTTP 503`,
    });
    up = true;
    // Readiness is cached briefly so probes stay cheap; a new probe after the cache sees the provider.
    jumpDate(5100);
    const ready = await fetch(`${gw.url}/readyz`);
    expect(((await ready.json()) as { checks: { identity: unknown } }).checks.identity).toEqual({ ok: true });
    expect(await readdir(dir)).not.toHaveLength(0);
  });

  it('answers a token with ERR_IDP_MISMATCH, not "cannot be reached", while discovery names another issuer', async () => {
    const slashed = await buildApp({ config: gatewayConfig(`${idp.issuer}/`, idp.audience), logger: false });
    onTestFinished(() => slashed.close());
    const token = await signToken(idp.signingKey, claims({ iss: `${idp.issuer}/` }));
    const r = await slashed.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });
    expect(r.statusCode).toBe(503);
    expect(r.json().error).toMatchObject({ code: 'ERR_IDP_MISMATCH', message: expect.stringContaining('differ by a trailing slash') });
    const ready = await slashed.inject({ method: 'GET', url: '/readyz' });
    expect(ready.json().checks.identity).toMatchObject({ ok: false, code: 'ERR_IDP_MISMATCH' });
  });
});
