import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { TunnelClient } from '../../cli/tunnel/tunnel-client.js';
import { gatewayFixture, httpOver, type HttpAnswer, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { startTestUpstream, type TestUpstream } from '../helpers/upstream.js';

const gateways = gatewayFixture();

/**
 * A gateway whose connections reach an upstream under a base path (`/base`), and an upstream that
 * records the exact target of every request it receives. `files` keeps the default hygiene; `models`
 * allows encoded slashes; a policy refuses `/admin…` on `files`.
 */
let upstream: TestUpstream;
let gw: TestGateway;
let alice: string;

function pathsGateway(app: TestGatewayOptions['app'] = {}): Promise<TestGateway> {
  return gateways.start({
    connections: () => [
      { name: 'files', type: 'http', upstream: `${upstream.url}/base`, allow_groups: ['ml-eng'] },
      { name: 'models', type: 'http', upstream: `${upstream.url}/base/`, allow_groups: ['ml-eng'], allow_encoded_slashes: true },
    ],
    config: {
      policies: [{ name: 'no-admin', when: 'connection.name == "files" && request.path.startsWith("/admin")', action: 'deny', message: 'admin is closed' }],
    },
    app,
  });
}

beforeAll(async () => {
  upstream = await startTestUpstream();
  gw = await pathsGateway();
  alice = await gw.token('alice');
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
});

/** One request written byte for byte as given (Node's client sends the path as it is, unresolved). */
function proxyCall(connection: string, target: string, method = 'GET'): Promise<HttpAnswer> {
  return httpOver(() => connect(gw.port, '127.0.0.1'), {
    method,
    path: `/v1/proxy/${connection}${target}`,
    headers: { authorization: `Bearer ${alice}`, connection: 'close' },
  });
}

async function tunnelTo(connection: string): Promise<TunnelClient> {
  const client = new TunnelClient({ gateway: gw.url, connection, getToken: async () => ({ token: alice }) });
  await client.start();
  onTestFinished(() => client.close());
  return client;
}

async function tunnelCall(client: TunnelClient, target: string, method = 'GET'): Promise<HttpAnswer> {
  const stream = await client.openStream({});
  return httpOver(() => stream, { method, path: target });
}

function errorOf(answer: HttpAnswer): { code: string; rule?: string; message: string } {
  const body = JSON.parse(answer.body.toString()) as { error: { code: string; rule?: string; message: string } } | { code: string; message: string };
  // The router's own refusal has its code at the top level.
  return 'code' in body ? body : body.error;
}

/** The targets an attacker tried, and what the upstream (base `/base`) may receive for each: a path, or nothing. */
const ATTACKS: ReadonlyArray<readonly [target: string, outcome: string]> = [
  ['/..%2fsecret.txt', 'encoded-slash'],
  ['/..%2Fsecret.txt', 'encoded-slash'],
  ['/%2e%2e%2fsecret.txt', 'encoded-slash'],
  ['/a/..%2f..%2fsecret.txt', 'encoded-slash'],
  ['/%2e%2e/secret.txt', 'above-root'],
  ['/.%2e/secret.txt', 'above-root'],
  ['/%2e./secret.txt', 'above-root'],
  ['/../secret.txt', 'above-root'],
  ['/a/../../secret.txt', 'above-root'],
  ['/..;/secret.txt', 'dot-segment-parameters'],
  ['/%5c..%5csecret.txt', 'backslash'],
  ['/\\..\\secret.txt', 'backslash'],
  ['/%00', 'control-character'],
  ['/v1/models%00.json', 'control-character'],
  ['/%c0%ae%c0%ae/secret.txt', 'invalid-utf8'],
  ['/./secret.txt', '/base/secret.txt'],
  ['/a/%2e%2e/secret.txt', '/base/secret.txt'],
  ['//v1//models', '/base/v1/models'],
  ['/%252e%252e/secret.txt', '/base/%252e%252e/secret.txt'],
  ['/v1/%6dodels?path=../%2fetc&x=%2e', '/base/v1/models?path=../%2fetc&x=%2e'],
];

/**
 * Sends every attack through `call` and checks, one by one, what the caller got and what the upstream
 * received. Targets the gateway's router cannot percent-decode are refused before any route runs, in the
 * same shape and with the same rule.
 */
async function expectHygiene(call: (target: string) => Promise<HttpAnswer>): Promise<void> {
  for (const [target, outcome] of ATTACKS) {
    const before = upstream.requests.length;
    const answer = await call(target);
    if (outcome.startsWith('/')) {
      expect(answer.status, target).toBe(200);
      expect(upstream.requests.slice(before).map((r) => r.url), target).toEqual([outcome]);
    } else {
      expect(answer.status, target).toBe(400);
      expect(errorOf(answer), target).toMatchObject({ code: 'ERR_PATH_REFUSED', rule: outcome });
      expect(upstream.requests.length, `${target} reached the upstream`).toBe(before);
    }
  }
  // Whatever was forwarded stayed under the base path.
  for (const r of upstream.requests) expect(r.url.startsWith('/base/')).toBe(true);
}

describe('path hygiene on the direct proxy', () => {
  it('refuses traversal, encoded slashes, backslashes, NUL and overlong UTF-8; forwards the normalised path under the base', async () => {
    await expectHygiene((target) => proxyCall('files', target));
  });

  it('holds a policy rule on /admin against %61dmin, //admin and dot segments', async () => {
    const before = upstream.requests.length;
    for (const target of ['/admin/users', '/%61dmin/users', '//admin/users', '/%2561dmin/../admin/users', '/v1/../admin/users', '/./admin/users', '/%2e/admin']) {
      const answer = await proxyCall('files', target);
      expect(answer.status, target).toBe(403);
      expect(errorOf(answer), target).toMatchObject({ code: 'ERR_POLICY_DENIED', message: 'admin is closed' });
    }
    expect(upstream.requests.length).toBe(before);
    expect((await proxyCall('files', '/administrator%2dguide')).status).toBe(403);
    expect((await proxyCall('files', '/v1/admin')).status).toBe(200);
  });

  it('refuses the proxy route itself climbing out of the connection', async () => {
    const before = upstream.requests.length;
    const answer = await proxyCall('files', '/../../v1/sessions');
    expect(answer.status).toBe(400);
    expect(errorOf(answer).rule).toBe('above-root');
    expect(upstream.requests.length).toBe(before);
  });
});

describe('path hygiene on the tunnel', () => {
  it('refuses and normalises the same targets as the proxy', async () => {
    const client = await tunnelTo('files');
    await expectHygiene((target) => tunnelCall(client, target));
  });

  it('holds a policy rule on /admin against %61dmin and //admin', async () => {
    const client = await tunnelTo('files');
    const before = upstream.requests.length;
    for (const target of ['/%61dmin/users', '//admin/users', '/v1/%2e%2e/admin']) {
      const answer = await tunnelCall(client, target);
      expect(answer.status, target).toBe(403);
      expect(errorOf(answer).code).toBe('ERR_POLICY_DENIED');
    }
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses absolute-form and "*" targets instead of forwarding to another host', async () => {
    const client = await tunnelTo('files');
    const before = upstream.requests.length;
    for (const [method, target] of [
      ['GET', `http://127.0.0.1:${gw.port}/v1/info`],
      ['GET', 'http://evil.example/secret.txt'],
      ['OPTIONS', '*'],
    ] as const) {
      const answer = await tunnelCall(client, target, method);
      expect(answer.status, target).toBe(400);
      expect(errorOf(answer), target).toMatchObject({ code: 'ERR_PATH_REFUSED', rule: 'origin-form' });
    }
    expect(upstream.requests.length).toBe(before);
    // The stream's neighbours carry on.
    expect((await tunnelCall(client, '/v1/models')).status).toBe(200);
  });
});

describe('a connection with allow_encoded_slashes', () => {
  it('keeps %2F encoded, still normalises the rest and never lets a segment climb', async () => {
    const client = await tunnelTo('models');
    for (const call of [(t: string) => proxyCall('models', t), (t: string) => tunnelCall(client, t)]) {
      let before = upstream.requests.length;
      expect((await call('/v1/models/org%2fname')).status).toBe(200);
      expect((await call('//v1/./models/%6Frg%2Fname')).status).toBe(200);
      expect(upstream.requests.slice(before).map((r) => r.url)).toEqual(['/base/v1/models/org%2Fname', '/base/v1/models/org%2Fname']);
      before = upstream.requests.length;
      for (const [target, rule] of [
        ['/..%2fsecret.txt', 'dot-segment-encoded-slash'],
        ['/a/..%2f..%2fsecret.txt', 'dot-segment-encoded-slash'],
        ['/v1%2F..%2F..%2Fsecret.txt', 'dot-segment-encoded-slash'],
        ['/%2e%2e/secret.txt', 'above-root'],
        ['/%5c..%5csecret.txt', 'backslash'],
      ]) {
        const answer = await call(target!);
        expect(answer.status, target).toBe(400);
        expect(errorOf(answer), target).toMatchObject({ code: 'ERR_PATH_REFUSED', rule });
      }
      expect(upstream.requests.length).toBe(before);
    }
  });
});

describe('what is recorded and logged', () => {
  it('the recording and the access log carry the normalised path, the query as sent', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const { port } = await pathsGateway({ logger: { level: 'info', stream } });
    const answer = await httpOver(() => connect(port, '127.0.0.1'), {
      path: '/v1/proxy/files//v1/%2e/%6dodels/x/..?q=%2e%2e',
      headers: { authorization: `Bearer ${alice}`, connection: 'close' },
    });
    expect(answer.status).toBe(200);
    expect(upstream.requests.at(-1)!.url).toBe('/base/v1/models/?q=%2e%2e');

    const session = answer.headers['x-sluice-session'] as string;
    const carol = await gw.token('carol');
    const detail = await fetch(`http://127.0.0.1:${port}/v1/sessions/${session}`, { headers: { authorization: `Bearer ${carol}` } });
    expect(detail.status).toBe(200);
    const { exchanges } = (await detail.json()) as { exchanges: Array<{ method: string; path: string }> };
    expect(exchanges.map((x) => [x.method, x.path])).toEqual([['GET', '/v1/models/?q=%2e%2e']]);

    const access = lines.map((l) => JSON.parse(l) as { msg: string; req?: { url: string } }).filter((l) => l.msg === 'request completed' && l.req?.url.startsWith('/v1/proxy/'));
    expect(access.map((l) => l.req!.url)).toEqual(['/v1/proxy/files/v1/models/?q=%2e%2e']);
  });
});
