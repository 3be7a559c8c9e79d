import { describe, expect, it, onTestFinished } from 'vitest';
import { checkRequestPath } from '../../server/pipeline/request-path.js';
import { TunnelClient } from '../../cli/tunnel/tunnel-client.js';
import { chatBody, gatewayFixture, httpOver, openRawTunnel } from '../helpers/gateway.js';

const gateways = gatewayFixture();

describe('request targets', () => {
  it.each(['http://evil/v1/files', '*', 'v1/models', '/v1/../admin', '/v1/%2E%2E/admin', '/./v1/models', '/v1/%2e/x'])('refuses %s', (path) => {
    expect(() => checkRequestPath(path)).toThrow(expect.objectContaining({ code: 'ERR_PATH_REFUSED' }));
  });

  it.each(['/v1/models', '/v1/chat/completions?x=../y', '/v1/a..b/c', '/'])('accepts %s', (path) => {
    expect(() => checkRequestPath(path)).not.toThrow();
  });

  it('answers an absolute-form or dot-segment target through the tunnel with 400 and forwards nothing', async () => {
    const gw = await gateways.start();
    const token = await gw.token('alice');
    const client = new TunnelClient({ gateway: gw.url, connection: 'llm', getToken: async () => ({ token }) });
    await client.start();
    onTestFinished(() => client.close());
    const before = gw.model.requests.length;
    for (const path of ['http://evil/v1/models', '/%2e%2e/admin']) {
      const stream = await client.openStream({});
      const answer = await httpOver(() => stream, { path });
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.body.toString()).error.code).toBe('ERR_PATH_REFUSED');
    }
    expect(gw.model.requests.length).toBe(before);
    const good = await client.openStream({});
    expect((await httpOver(() => good, { path: '/v1/models' })).status).toBe(200);
  });
});

describe('policies that read the body', () => {
  it('refuse a body padded past the read-ahead instead of letting it slip by the rule', async () => {
    const gw = await gateways.start({
      config: { policies: [{ name: 'no-gpt5', when: 'request.json.model.startsWith("gpt-5")', action: 'deny', message: 'no frontier models' }] },
    });
    const auth = { authorization: `Bearer ${await gw.token('alice')}`, 'content-type': 'application/json' };
    const denied = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'gpt-5', messages: [] }) });
    expect(denied.status).toBe(403);
    const padded = `{"model":"gpt-5",${' '.repeat(1024 * 1024 + 10)}"messages":[]}`;
    const before = gw.model.requests.length;
    const res = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, { method: 'POST', headers: auth, body: padded });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_BODY_TOO_LARGE');
    expect(gw.model.requests.length).toBe(before);
    const ok = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, { method: 'POST', headers: auth, body: chatBody('hi') });
    expect(ok.status).toBe(200);
  });

  it('leave alone a large body whose request no body rule applies to', async () => {
    const gw = await gateways.start({
      config: { policies: [{ name: 'chat-models', when: 'request.path.startsWith("/v1/chat") && request.json.model == "gpt-5"', action: 'deny' }] },
      model: { maxBodyBytes: 8 * 1024 * 1024 },
    });
    const auth = { authorization: `Bearer ${await gw.token('alice')}`, 'content-type': 'application/json' };
    const big = JSON.stringify({ model: 'text-embedding', input: 'x'.repeat(2 * 1024 * 1024) });
    const before = gw.model.requests.length;
    const embeddings = await fetch(`${gw.url}/v1/proxy/llm/v1/embeddings`, { method: 'POST', headers: auth, body: big });
    expect(embeddings.status).not.toBe(413);
    expect(gw.model.requests.length).toBe(before + 1);
    const chat = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, { method: 'POST', headers: auth, body: big });
    expect(chat.status).toBe(413);
    expect(gw.model.requests.length).toBe(before + 1);
  });

  it('read as far as policy_read_ahead allows, so large bodies can be judged where the operator wants', async () => {
    const gw = await gateways.start({
      model: { maxBodyBytes: 8 * 1024 * 1024 },
      config: {
        policy_read_ahead: 4 * 1024 * 1024,
        policies: [{ name: 'no-gpt5', when: 'request.json.model.startsWith("gpt-5")', action: 'deny', message: 'no frontier models' }],
      },
    });
    const auth = { authorization: `Bearer ${await gw.token('alice')}`, 'content-type': 'application/json' };
    const pad = ' '.repeat(2 * 1024 * 1024);
    const denied = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, { method: 'POST', headers: auth, body: `{"model":"gpt-5",${pad}"messages":[]}` });
    expect(denied.status).toBe(403);
    const allowed = await fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
      method: 'POST',
      headers: auth,
      body: `{"model":"demo",${pad}"messages":[{"role":"user","content":"hi"}]}`,
    });
    expect(allowed.status).toBe(200);
  });
});

describe('tcp connections and policy', () => {
  it('a deny rule refuses a tcp stream: the caller is reset and the upstream never sees it', async () => {
    const gw = await gateways.start({ config: { policies: [{ name: 'no-echo', when: 'connection.name == "echo"', action: 'deny', message: 'echo is closed' }] } });
    const token = await gw.token('alice');
    const client = new TunnelClient({ gateway: gw.url, connection: 'echo', getToken: async () => ({ token }) });
    await client.start();
    const stream = await client.openStream({});
    const outcome = await new Promise<string>((resolve) => {
      stream.on('data', () => resolve('data'));
      stream.on('error', (err: Error & { code?: string }) => resolve(`error:${err.code}`));
      stream.on('end', () => resolve('end'));
      stream.write('hello?');
    });
    client.close();
    expect(outcome).toBe('error:ERR_POLICY_DENIED');
  });
});

describe('re-authentication input', () => {
  it('a reauth token with a huge algorithm name closes that tunnel and the gateway carries on', async () => {
    const gw = await gateways.start();
    const token = await gw.token('alice');
    const wsUrl = `${gw.url.replace('http', 'ws')}/v1/tunnel?connection=llm`;
    const tunnel = openRawTunnel(wsUrl, token);
    await tunnel.hello;
    const header = Buffer.from(JSON.stringify({ alg: 'A'.repeat(5000), typ: 'JWT' })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ sub: 'alice' })).toString('base64url');
    tunnel.ws.send(JSON.stringify({ type: 'reauth', token: `${header}.${body}.sig` }));
    const closed = await tunnel.closed;
    expect(closed.code).toBe(4401);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
  });
});

describe('a reload that takes access away', () => {
  it('closes an open tunnel at its next stream with ERR_CONNECTION_FORBIDDEN', async () => {
    const llm = (upstream: string, groups: string[]) => ({ name: 'llm', type: 'http', upstream, allow_groups: groups });
    const gw = await gateways.start({ reloadable: true, model: { apiKey: undefined }, connections: ({ model }) => [llm(model.url, ['ml-eng'])] });

    const alice = await gw.token('alice');
    const client = new TunnelClient({ gateway: gw.url, connection: 'llm', getToken: async () => ({ token: alice }) });
    await client.start();
    onTestFinished(() => client.close());
    const fatal = new Promise<{ code: string }>((resolve) => client.once('fatal', resolve));
    const first = await client.openStream({});
    first.on('error', () => undefined);
    expect((await httpOver(() => first, { path: '/v1/models' })).status).toBe(200);

    await gw.writeConfig({ connections: [llm(gw.model.url, ['ml-leads'])] });
    const admin = await gw.token('bob', { groups: ['platform'] });
    const reload = await fetch(`${gw.url}/v1/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    expect(reload.status).toBe(200);

    const before = gw.model.requests.length;
    const second = await client.openStream({});
    second.on('error', () => undefined);
    await httpOver(() => second, { path: '/v1/models' }).catch(() => undefined);
    expect((await fatal).code).toBe('ERR_CONNECTION_FORBIDDEN');
    expect(gw.model.requests.length).toBe(before);
  });
});

describe('a request held longer than the proxy session idle time', () => {
  it('keeps its session open while held, and completes once approved', async () => {
    const gw = await gateways.start({
      config: {
        storage: { proxy_session_idle: '100ms' },
        policies: [{ name: 'hold-all', when: 'request.method == "POST"', action: 'review', reviewers: ['ml-leads'], timeout: '30s' }],
      },
    });
    const alice = await gw.token('alice');
    const bob = await gw.token('bob');
    const call = fetch(`${gw.url}/v1/proxy/llm/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: chatBody('held'),
    });
    let reviewId: string | undefined;
    for (let i = 0; i < 100 && reviewId === undefined; i++) {
      const list = (await (await fetch(`${gw.url}/v1/reviews?status=pending`, { headers: { authorization: `Bearer ${bob}` } })).json()) as { reviews: { id: string }[] };
      reviewId = list.reviews[0]?.id;
      if (reviewId === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    expect(reviewId).toBeDefined();
    // Well past the idle time: the session must still be there when the request goes on.
    await new Promise((r) => setTimeout(r, 500));
    const approved = await fetch(`${gw.url}/v1/reviews/${reviewId}/approve`, { method: 'POST', headers: { authorization: `Bearer ${bob}`, 'content-type': 'application/json' }, body: '{}' });
    expect(approved.status).toBe(200);
    const res = await call;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toContain('held');
  });
});
