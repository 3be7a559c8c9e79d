import { once } from 'node:events';
import * as jose from 'jose';
import OpenAI from 'openai';
import * as client from 'openid-client';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DEMO_PII, startModelServer } from '../../server/demo/model-server.js';
import {
  approveDevice,
  clientCredentialsToken,
  denyDevice,
  hs256WithPublicKey,
  newDeviceBrowser,
  signToken,
  startTestIdp,
  unsignedToken,
  type TestIdp,
} from '../helpers/oidc.js';

const LOGIN_SCOPE = 'openid offline_access profile email';

async function testIdp(overrides: Parameters<typeof startTestIdp>[0] = {}): Promise<TestIdp> {
  const idp = await startTestIdp(overrides);
  onTestFinished(() => idp.close());
  return idp;
}

function cliConfig(idp: TestIdp): Promise<client.Configuration> {
  return client.discovery(new URL(idp.issuer), idp.cliClientId, undefined, undefined, {
    execute: [client.allowInsecureRequests],
  });
}

async function verifyAccessToken(idp: TestIdp, token: string) {
  const jwks = jose.createRemoteJWKSet(new URL(`${idp.issuer}/jwks`));
  return jose.jwtVerify(token, jwks, { issuer: idp.issuer, audience: idp.audience, algorithms: ['RS256'] });
}

/**
 * Polls like the CLI, but every 100 ms instead of the 5 s openid-client assumes when the provider sends no
 * `interval`; the poll stops with the test, so a failed approval cannot leave it running.
 */
function poll(config: client.Configuration, device: client.DeviceAuthorizationResponse) {
  const stop = new AbortController();
  onTestFinished(() => stop.abort());
  const tokens = client.pollDeviceAuthorizationGrant(config, { ...device, interval: 0.1 }, undefined, { signal: stop.signal });
  // Observed by the test's own await; this only keeps an abandoned poll from being an unhandled rejection.
  tokens.catch(() => undefined);
  return tokens;
}

/** Runs `sluice login`'s flow: device authorization, a person approving in the browser, polling. */
async function deviceLogin(idp: TestIdp, config: client.Configuration, accountId: string) {
  const device = await client.initiateDeviceAuthorization(config, { scope: LOGIN_SCOPE, resource: idp.audience });
  const tokens = poll(config, device);
  await approveDevice({ verificationUriComplete: device.verification_uri_complete!, accountId });
  return tokens;
}

describe('demo identity provider with the real openid-client', () => {
  it('device-code login gives a JWT for the gateway audience with the user groups, and a refresh token', async () => {
    const idp = await testIdp();
    const config = await cliConfig(idp);
    const device = await client.initiateDeviceAuthorization(config, { scope: LOGIN_SCOPE, resource: idp.audience });
    expect(device.user_code).toMatch(/^[A-Z]{4}-[A-Z]{4}$/);
    expect(device.verification_uri).toBe(`${idp.issuer}/device`);

    const polled = poll(config, device);
    await approveDevice({ verificationUriComplete: device.verification_uri_complete!, accountId: 'alice' });
    const tokens = await polled;

    const { payload, protectedHeader } = await verifyAccessToken(idp, tokens.access_token);
    expect(protectedHeader.kid).toBe(idp.signingKey.kid);
    expect(payload).toMatchObject({ sub: 'alice', aud: idp.audience, groups: ['ml-eng'], email: 'alice@example.com' });
    expect(payload.exp! - payload.iat!).toBe(3600);
    expect(tokens.refresh_token).toEqual(expect.any(String));
    expect(tokens.claims()).toMatchObject({ sub: 'alice', iss: idp.issuer });
  });

  it('gives the audience even when the CLI sends no resource parameter', async () => {
    const idp = await testIdp();
    const config = await cliConfig(idp);
    const device = await client.initiateDeviceAuthorization(config, { scope: LOGIN_SCOPE });
    const polled = poll(config, device);
    await approveDevice({ verificationUriComplete: device.verification_uri_complete!, accountId: 'carol' });
    const { payload } = await verifyAccessToken(idp, (await polled).access_token);
    expect(payload).toMatchObject({ sub: 'carol', aud: idp.audience, groups: ['security'] });
  });

  it('refreshes a short-lived token, rotating the refresh token, and rejects the used one', async () => {
    const idp = await testIdp({ accessTokenTtlSeconds: 5 });
    const config = await cliConfig(idp);
    const first = await deviceLogin(idp, config, 'bob');
    const firstClaims = (await verifyAccessToken(idp, first.access_token)).payload;
    expect(firstClaims.exp! - firstClaims.iat!).toBe(5);

    const refreshed = await client.refreshTokenGrant(config, first.refresh_token!);
    const { payload } = await verifyAccessToken(idp, refreshed.access_token);
    expect(payload).toMatchObject({ sub: 'bob', aud: idp.audience, groups: ['ml-leads'], email: 'bob@example.com' });
    expect(payload.jti).not.toBe(firstClaims.jti);
    expect(refreshed.refresh_token).toEqual(expect.any(String));
    expect(refreshed.refresh_token).not.toBe(first.refresh_token);

    await expect(client.refreshTokenGrant(config, first.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('ends the poll with access_denied when the person cancels on the code page', async () => {
    const idp = await testIdp();
    const config = await cliConfig(idp);
    const device = await client.initiateDeviceAuthorization(config, { scope: LOGIN_SCOPE, resource: idp.audience });
    const polled = poll(config, device);
    await denyDevice({ verificationUriComplete: device.verification_uri_complete! });
    await expect(polled).rejects.toMatchObject({ error: 'access_denied' });
  });

  it('ends the poll with access_denied when the person cancels on the login page', async () => {
    const idp = await testIdp();
    const config = await cliConfig(idp);
    const device = await client.initiateDeviceAuthorization(config, { scope: LOGIN_SCOPE, resource: idp.audience });
    const polled = poll(config, device);
    await denyDevice({ verificationUriComplete: device.verification_uri_complete!, at: 'login' });
    await expect(polled).rejects.toMatchObject({ error: 'access_denied' });
  });

  it('lists every demo user on the login page and refuses a code used twice', async () => {
    const idp = await testIdp();
    const config = await cliConfig(idp);
    const device = await client.initiateDeviceAuthorization(config, { scope: LOGIN_SCOPE, resource: idp.audience });
    await expect(
      approveDevice({ verificationUriComplete: device.verification_uri_complete!, accountId: 'mallory' }),
    ).rejects.toThrow('user mallory is not offered on the login page (offered: alice, bob, carol, dave)');
    // The code was confirmed in the first browser: a second browser cannot take it over.
    await expect(
      approveDevice({ verificationUriComplete: device.verification_uri_complete!, accountId: 'dave' }),
    ).rejects.toThrow('That code has already been used');
  });

  it('asks who is signing in every time, so one browser can switch people', async () => {
    const idp = await testIdp();
    const config = await cliConfig(idp);
    const browser = newDeviceBrowser();
    const subjects: unknown[] = [];
    for (const accountId of ['alice', 'bob']) {
      const device = await client.initiateDeviceAuthorization(config, { scope: LOGIN_SCOPE, resource: idp.audience });
      const polled = poll(config, device);
      await approveDevice({ verificationUriComplete: device.verification_uri_complete!, accountId, browser });
      const { payload } = await verifyAccessToken(idp, (await polled).access_token);
      subjects.push([payload.sub, payload.groups]);
    }
    expect(subjects).toEqual([
      ['alice', ['ml-eng']],
      ['bob', ['ml-leads']],
    ]);
  });

  it('client credentials give a JWT with the CI client groups and the gateway audience', async () => {
    const idp = await testIdp({ accessTokenTtlSeconds: 20 });
    const viaFetch = await clientCredentialsToken({
      issuer: idp.issuer,
      clientId: idp.ciClient.clientId,
      clientSecret: idp.ciClient.clientSecret,
      audience: idp.audience,
    });
    const { payload } = await verifyAccessToken(idp, viaFetch);
    expect(payload).toMatchObject({ sub: 'ci-bot', client_id: 'ci-bot', aud: idp.audience, groups: ['ml-eng', 'ci'] });
    expect(payload.exp! - payload.iat!).toBe(20);

    const ci = await client.discovery(new URL(idp.issuer), idp.ciClient.clientId, idp.ciClient.clientSecret, undefined, {
      execute: [client.allowInsecureRequests],
    });
    const viaClient = await client.clientCredentialsGrant(ci, { resource: idp.audience });
    expect((await verifyAccessToken(idp, viaClient.access_token)).payload).toMatchObject({ sub: 'ci-bot', aud: idp.audience });
    // Without resource the provider still targets the gateway.
    const defaulted = await client.clientCredentialsGrant(ci);
    expect((await verifyAccessToken(idp, defaulted.access_token)).payload.aud).toBe(idp.audience);

    await expect(
      clientCredentialsToken({ issuer: idp.issuer, clientId: 'ci-bot', clientSecret: 'wrong', audience: idp.audience }),
    ).rejects.toThrow('invalid_client');
    await expect(
      clientCredentialsToken({ ...idp.ciClient, issuer: idp.issuer, audience: 'urn:someone:else' }),
    ).rejects.toThrow('invalid_target');
  });

  it('revoking the refresh token ends the session; JWT access tokens cannot be revoked', async () => {
    const idp = await testIdp();
    const config = await cliConfig(idp);
    const tokens = await deviceLogin(idp, config, 'alice');
    await client.tokenRevocation(config, tokens.refresh_token!, { token_type_hint: 'refresh_token' });
    await expect(client.refreshTokenGrant(config, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    await expect(client.tokenRevocation(config, tokens.access_token)).rejects.toMatchObject({ error: 'unsupported_token_type' });
  });

  it('serves the public signing keys, and none of the adversarial helper tokens verify', async () => {
    const idp = await testIdp();
    const published = (await (await fetch(`${idp.issuer}/jwks`)).json()) as { keys: jose.JWK[] };
    expect(published.keys).toEqual([expect.objectContaining({ kid: idp.signingKey.kid, kty: 'RSA' })]);
    expect(published.keys[0]).not.toHaveProperty('d');
    expect(idp.idp.publicJwks().keys[0]).toMatchObject({ kid: idp.signingKey.kid, n: idp.signingKey.n });
    expect(idp.idp.publicJwks().keys[0]).not.toHaveProperty('d');

    const genuine = await signToken(idp.signingKey, idp.claimsFor('dave'));
    expect((await verifyAccessToken(idp, genuine)).payload).toMatchObject({ sub: 'dave', groups: ['interns'] });

    // Each refused for its own reason: a token refused for another (a network error, a typo in the test)
    // would prove nothing about the one it was made to show.
    const forged: [string, Record<string, unknown>][] = [
      [unsignedToken(idp.claimsFor('dave')), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' }],
      [hs256WithPublicKey(published.keys[0]!, idp.claimsFor('dave')), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' }],
      [await signToken(idp.signingKey, idp.claimsFor('dave', { aud: 'urn:other' })), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' }],
      [await signToken(idp.signingKey, idp.claimsFor('dave', { exp: Math.floor(Date.now() / 1000) - 60 })), { code: 'ERR_JWT_EXPIRED' }],
      [
        await signToken((await jose.generateKeyPair('RS256', { extractable: true })).privateKey, idp.claimsFor('dave'), {
          kid: idp.signingKey.kid,
        }),
        { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' },
      ],
    ];
    for (const [token, why] of forged) await expect(verifyAccessToken(idp, token)).rejects.toMatchObject(why);
  });

  it('closes promptly while a client keeps a connection open', async () => {
    const idp = await startTestIdp();
    const config = await cliConfig(idp);
    await client.initiateDeviceAuthorization(config, { scope: LOGIN_SCOPE });
    const started = Date.now();
    await idp.close();
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(fetch(`${idp.issuer}/jwks`)).rejects.toThrow();
  });
});

describe('demo model server with the real openai SDK', () => {
  async function model(options: Parameters<typeof startModelServer>[0] = {}) {
    const server = await startModelServer(options);
    onTestFinished(() => server.close());
    return server;
  }

  it('answers a non-streaming chat completion that echoes the question and carries fake PII', async () => {
    const server = await model({ apiKey: 'k-123' });
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'k-123', maxRetries: 0 });
    const completion = await openai.chat.completions.create({
      model: 'demo-echo',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'who is our best customer?' },
      ],
    });
    const answer = completion.choices[0]!.message.content!;
    expect(answer).toContain('who is our best customer?');
    for (const value of Object.values(DEMO_PII)) expect(answer).toContain(value);
    expect(completion.usage).toMatchObject({ prompt_tokens: 7, total_tokens: completion.usage!.prompt_tokens + completion.usage!.completion_tokens });
    expect(completion.object).toBe('chat.completion');

    const again = await openai.chat.completions.create({ model: 'demo-echo', messages: [{ role: 'user', content: 'who is our best customer?' }] });
    expect(again.choices[0]!.message.content).toBe(answer);

    expect(server.requests.at(-1)).toMatchObject({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: 'Bearer k-123' } });
    expect(JSON.parse(server.requests.at(-1)!.body)).toMatchObject({ model: 'demo-echo' });
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['demo-echo']);
  });

  it('streams the same answer in many small chunks, and the first arrives before the last is sent', async () => {
    const server = await model({ apiKey: 'k-123', chunks: 40, chunkDelayMs: 10 });
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'k-123', maxRetries: 0 });
    let upstreamDone = false;
    const ended = once(server.events, 'stream-end').then(([event]) => {
      upstreamDone = true;
      return event;
    });
    const stream = await openai.chat.completions.create({
      model: 'demo-echo',
      messages: [{ role: 'user', content: 'stream please' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const deltas: string[] = [];
    let doneWhenFirstArrived: boolean | undefined;
    let finishReason: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) {
        doneWhenFirstArrived ??= upstreamDone;
        deltas.push(content);
      }
      finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(doneWhenFirstArrived).toBe(false);
    expect(deltas).toHaveLength(40);
    expect(finishReason).toBe('stop');
    expect(usage?.completion_tokens).toBeGreaterThan(10);
    expect(await ended).toEqual({ requestId: 0, chunks: 40, aborted: false });

    const whole = await openai.chat.completions.create({ model: 'demo-echo', messages: [{ role: 'user', content: 'stream please' }] });
    expect(deltas.join('')).toBe(whole.choices[0]!.message.content);
  });

  it('ends the stream on the server side when the client goes away', async () => {
    const server = await model({ chunks: 40, chunkDelayMs: 20 });
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const ended = once(server.events, 'stream-end');
    const stream = await openai.chat.completions.create({ model: 'demo-echo', messages: [{ role: 'user', content: 'x' }], stream: true });
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) break;
    }
    const [event] = await ended;
    expect(event).toMatchObject({ aborted: true });
    expect(event.chunks).toBeLessThan(40);
  });

  it('rejects a wrong API key, unknown routes and oversized bodies with OpenAI-style errors', async () => {
    const server = await model({ apiKey: 'k-123' });
    const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'nope', maxRetries: 0 });
    const error = await wrong.chat.completions.create({ model: 'demo-echo', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(error).toMatchObject({ status: 401, code: 'invalid_api_key', type: 'invalid_request_error' });

    const missing = await fetch(`${server.url}/v1/audio/speech`, { method: 'POST', headers: { authorization: 'Bearer k-123' }, body: '{}' });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'unknown_url', type: 'invalid_request_error', message: expect.any(String) } });

    const big = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer k-123', 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(1024 * 1024) }] }),
    });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ error: { code: 'request_too_large' } });
  });

  it('waits for x-demo-delay-ms before answering', async () => {
    const server = await model();
    let answered = false;
    const response = fetch(`${server.url}/v1/models`, { headers: { 'x-demo-delay-ms': '300' } }).then((r) => {
      answered = true;
      return r;
    });
    await once(server.events, 'request');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(answered).toBe(false);
    expect((await response).status).toBe(200);
  });
});
