import { randomBytes } from 'node:crypto';
import { chmod, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { checkKeyCanary, KEY_CANARY_FILE } from '../../server/recording/key-canary.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { gatewayFixture, refusedUpgrade, type TestGatewayOptions } from '../helpers/gateway.js';
import { signToken } from '../helpers/oidc.js';
import { tempDir } from '../helpers/temp-dir.js';
import { startTestUpstream, type TestUpstream } from '../helpers/upstream.js';

const gateways = gatewayFixture();
let upstream: TestUpstream;

beforeAll(async () => {
  upstream = await startTestUpstream();
});

afterAll(async () => {
  await upstream.close();
});

type StorageKeys = { master_key: string } | { master_keys: { id: string; key: string }[] };

const newKey = (): string => randomBytes(32).toString('base64');

/** A storage dir made the way an operator often makes one: `mkdir data`, mode 0755. */
async function storageDir(): Promise<string> {
  const dir = await tempDir('sluice-kfh-');
  await chmod(dir, 0o755);
  return dir;
}

/** A gateway on `dir` with `keys`; its one connection, `llm`, goes to the test upstream. */
function configFor(dir: string, keys: StorageKeys): TestGatewayOptions {
  return {
    connections: () => [{ name: 'llm', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'], headers: { authorization: 'Bearer upstream-secret' } }],
    config: { storage: { dir, ...keys } },
  };
}

interface Running {
  app: FastifyInstance;
  url: string;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  /** The raw log output. */
  text(): string;
}

/** The real gateway, listening on 127.0.0.1:0, logging at info into memory. */
async function start(options: TestGatewayOptions): Promise<Running> {
  const raw: string[] = [];
  const gw = await gateways.start({ ...options, app: { logger: { level: 'info', stream: { write: (line: string) => void raw.push(line) } } } });
  return {
    app: gw.app,
    url: gw.url,
    get logs() {
      return raw.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    text: () => raw.join(''),
  };
}

async function token(user: 'alice' | 'carol'): Promise<string> {
  return signToken(gateways.idp.signingKey, gateways.idp.claimsFor(user));
}

/** One proxied call as alice; opens (or reuses) her proxy session. */
async function proxyCall(gw: Running, path = '/v1/proxy/llm/describe'): Promise<Response> {
  const res = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${await token('alice')}` } });
  await res.arrayBuffer();
  return res;
}

async function waitFor<T>(probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const v = probe();
    if (v !== undefined) return v;
    await sleep(10);
  }
  throw new Error('timed out');
}

describe('the access log', () => {
  it('never holds a credential from a query string, in access lines or upgrade lines, while the upstream gets the query as sent', async () => {
    const gw = await start(configFor(await storageDir(), { master_key: newKey() }));
    const res = await proxyCall(gw, '/v1/proxy/llm/x?api_key=SECRET-api-key-4711&access_token=T-access-token-0815&q=1');
    expect(res.status).toBe(200);
    const line = await waitFor(() => gw.logs.find((l) => l.msg === 'request completed' && (l.req as { url: string }).url.startsWith('/v1/proxy/llm/x?')));
    expect(line.req).toMatchObject({ method: 'GET', url: '/v1/proxy/llm/x?api_key=[removed]&access_token=[removed]&q=1' });
    expect(upstream.requests.at(-1)!.url).toBe('/x?api_key=SECRET-api-key-4711&access_token=T-access-token-0815&q=1');

    // A WebSocket upgrade is logged as it arrives, by the same serializer.
    const refused = await refusedUpgrade(`${gw.url.replace('http', 'ws')}/v1/tunnel?connection=llm&token=T-tunnel-token-2342`);
    expect(refused.status).toBe(401);
    await waitFor(() => gw.logs.find((l) => (l.req as { url?: string } | undefined)?.url === '/v1/tunnel?connection=llm&token=[removed]'));

    for (const secret of ['SECRET-api-key-4711', 'T-access-token-0815', 'T-tunnel-token-2342']) expect(gw.text()).not.toContain(secret);
  });
  it('never holds a header, even with a logger whose own serializers would print them all', async () => {
    const raw: string[] = [];
    const gw = await gateways.start({
      ...configFor(await storageDir(), { master_key: newKey() }),
      app: {
        logger: {
          level: 'info',
          stream: { write: (line: string) => void raw.push(line) },
          // A caller's logger that would print every header of requests and replies: the gateway's own serializers stand.
          serializers: { req: (req: { headers: unknown }) => ({ headers: req.headers }), res: (reply: { getHeaders?(): unknown }) => ({ headers: reply.getHeaders?.() }) },
        },
      },
    });
    const jwt = await token('alice');
    const res = await fetch(`${gw.url}/v1/proxy/llm/describe`, { headers: { authorization: `Bearer ${jwt}`, cookie: 'session=COOKIE-SECRET-9931', 'proxy-authorization': 'Basic PROXY-SECRET-7' } });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const line = await waitFor(() => raw.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request completed' && (l.req as { url?: string }).url === '/v1/proxy/llm/describe'));
    expect(line.req).toEqual({ method: 'GET', url: '/v1/proxy/llm/describe', host: expect.any(String), remoteAddress: '127.0.0.1', remotePort: expect.any(Number) });
    expect(line.res).toEqual({ statusCode: 200 });
    const text = raw.join('');
    for (const secret of [jwt, 'COOKIE-SECRET-9931', 'PROXY-SECRET-7', 'upstream-secret']) expect(text).not.toContain(secret);
  });
});

describe('files under storage.dir', () => {
  it('are 0600, the SQLite WAL and shared-memory files too, whatever the umask; a 0755 storage.dir is named in a warning', async () => {
    // The widest umask: a file left to the process default would come out 0666.
    const umask = process.umask(0);
    onTestFinished(() => void process.umask(umask));
    const dir = await storageDir();
    const gw = await start(configFor(dir, { master_key: newKey() }));
    expect((await proxyCall(gw)).status).toBe(200);

    const files: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(join(d, e.name));
        else files.push(join(d, e.name));
      }
    };
    await walk(dir);
    const names = files.map((f) => f.slice(dir.length + 1));
    for (const suffix of ['', '-wal', '-shm']) expect(names).toContain(`index.sqlite${suffix}`);
    expect(names).toContain(KEY_CANARY_FILE);
    expect(names.some((n) => n.startsWith('sessions/'))).toBe(true);
    const modes = Object.fromEntries(await Promise.all(files.map(async (f) => [f.slice(dir.length + 1), ((await stat(f)).mode & 0o777).toString(8)] as const)));
    expect(modes).toEqual(Object.fromEntries(names.map((n) => [n, '600'])));

    const warning = gw.logs.find((l) => l.level === 40 && l.path === dir);
    expect(warning).toMatchObject({ mode: '0755' });
    expect(String(warning!.msg)).toContain(dir);
  });

  it('tightens database files an earlier start left 0644', async () => {
    const dir = await storageDir();
    await writeFile(join(dir, 'index.sqlite'), '', { mode: 0o644 });
    await chmod(join(dir, 'index.sqlite'), 0o644);
    const gw = await start(configFor(dir, { master_key: newKey() }));
    expect((await proxyCall(gw)).status).toBe(200);
    for (const f of ['index.sqlite', 'index.sqlite-wal', 'index.sqlite-shm']) expect(((await stat(join(dir, f))).mode & 0o777).toString(8)).toBe('600');
  });
});

describe('headers an upstream might take for the client address', () => {
  it('are the gateway’s own: a caller’s X-Real-IP, Forwarded, True-Client-IP and the like never reach the upstream', async () => {
    const gw = await start(configFor(await storageDir(), { master_key: newKey() }));
    const res = await fetch(`${gw.url}/v1/proxy/llm/describe`, {
      headers: {
        authorization: `Bearer ${await token('alice')}`,
        'x-real-ip': '6.6.6.6',
        forwarded: 'for=6.6.6.6;proto=https',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-port': '443',
        'x-forwarded-proto': 'https',
        'x-client-ip': '6.6.6.6',
        'true-client-ip': '6.6.6.6',
        'cf-connecting-ip': '6.6.6.6',
        'x-cluster-client-ip': '6.6.6.6',
        'fastly-client-ip': '6.6.6.6',
        'x-kept': 'yes',
      },
    });
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1)!.headers;
    expect(seen).toMatchObject({ 'x-real-ip': '127.0.0.1', 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-kept': 'yes' });
    for (const name of ['forwarded', 'x-forwarded-port', 'x-client-ip', 'true-client-ip', 'cf-connecting-ip', 'x-cluster-client-ip', 'fastly-client-ip']) {
      expect(seen, name).not.toHaveProperty(name);
    }
    expect(JSON.stringify(seen)).not.toContain('6.6.6.6');
  });

  it('never include one that overrides the path or method policy judged', async () => {
    const gw = await start(configFor(await storageDir(), { master_key: newKey() }));
    const overrides = {
      'x-original-url': '/admin/delete-all',
      'x-rewrite-url': '/admin/delete-all',
      'x-original-uri': '/admin/delete-all',
      'x-forwarded-uri': '/admin/delete-all',
      'x-http-method-override': 'DELETE',
      'x-http-method': 'DELETE',
      'x-method-override': 'DELETE',
      'x-original-method': 'DELETE',
    };
    const res = await fetch(`${gw.url}/v1/proxy/llm/describe`, { headers: { authorization: `Bearer ${await token('alice')}`, ...overrides } });
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1)!;
    for (const name of Object.keys(overrides)) expect(seen.headers, name).not.toHaveProperty(name);
    expect(seen.method).toBe('GET');
  });
});

describe('the master key', () => {
  /** A first start with `keys`, one recorded exchange, and a clean stop. */
  async function dirWrittenWith(keys: StorageKeys): Promise<{ dir: string; session: string }> {
    const dir = await storageDir();
    const gw = await start(configFor(dir, keys));
    expect((await proxyCall(gw)).status).toBe(200);
    await gw.app.close();
    const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
    const { sessions } = await store.listSessions();
    await store.close();
    expect(sessions).toHaveLength(1);
    return { dir, session: sessions[0]!.id };
  }

  async function refusal(options: TestGatewayOptions): Promise<{ code?: string; message: string }> {
    const err = await gateways.start(options).then(
      async (gw) => {
        await gw.close();
        throw new Error('the gateway started');
      },
      (e: unknown) => e as { code?: string; message: string },
    );
    return err;
  }

  it('refuses a start with another key under the same id, naming the id', async () => {
    const { dir } = await dirWrittenWith({ master_key: newKey() });
    const err = await refusal(configFor(dir, { master_key: newKey() }));
    expect(err.code).toBe('ERR_MASTER_KEY_MISMATCH');
    expect(err.message).toContain('Master key "default" does not match');
  });

  it('starts with a rotated ring (new key first, old kept), re-seals the canary under both, and still reads the old session; refuses once the old key is dropped', async () => {
    const old = newKey();
    const { dir, session } = await dirWrittenWith({ master_key: old });
    const rotated = { master_keys: [{ id: 'k2', key: newKey() }, { id: 'default', key: old }] };
    const gw = await start(configFor(dir, rotated));
    const canary = JSON.parse(await readFile(join(dir, KEY_CANARY_FILE), 'utf8')) as { keys: Record<string, string> };
    expect(Object.keys(canary.keys).sort()).toEqual(['default', 'k2']);
    const ready = await gw.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().checks.master_key).toEqual({ ok: true });
    const events = await gw.app.inject({ method: 'GET', url: `/v1/sessions/${session}/events?payload=false`, headers: { authorization: `Bearer ${await token('carol')}` } });
    expect(events.statusCode).toBe(200);
    expect(events.body).toContain('"session.start"');
    await gw.app.close();

    const err = await refusal(configFor(dir, { master_keys: [rotated.master_keys[0]!] }));
    expect(err.code).toBe('ERR_MASTER_KEY_MISMATCH');
    expect(err.message).toContain('no master key "default"');
    expect(err.message).toContain(session);
  });

  it('checks a directory written before canaries against its newest session', async () => {
    const key = newKey();
    const { dir } = await dirWrittenWith({ master_key: key });
    await rm(join(dir, KEY_CANARY_FILE));
    const err = await refusal(configFor(dir, { master_key: newKey() }));
    expect(err.code).toBe('ERR_MASTER_KEY_MISMATCH');
    expect(err.message).toContain('"default"');
    await expect(readFile(join(dir, KEY_CANARY_FILE))).rejects.toMatchObject({ code: 'ENOENT' });

    const gw = await start(configFor(dir, { master_key: key }));
    expect((await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    expect(JSON.parse(await readFile(join(dir, KEY_CANARY_FILE), 'utf8'))).toMatchObject({ keys: { default: expect.any(String) } });
  });

  /** The sessions of `dir`, newest first, as the index holds them. */
  async function sessionsOf(dir: string): Promise<{ id: string; file: string }[]> {
    const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
    const { sessions } = await store.listSessions();
    await store.close();
    return sessions.map((s) => ({ id: s.id, file: join(dir, s.file) }));
  }

  it('without a canary, looks past a newest session a crash left without a header: a wrong key is refused and never sealed, the right one starts', async () => {
    const key = newKey();
    const { dir } = await dirWrittenWith({ master_key: key });
    const again = await start(configFor(dir, { master_key: key }));
    expect((await proxyCall(again)).status).toBe(200);
    await again.app.close();
    const [newest, older] = await sessionsOf(dir);
    expect(older).toBeDefined();
    // What a crash between creating the file and syncing its header leaves behind.
    await writeFile(newest!.file, '');
    // The gateway's own advice for a canary it cannot read.
    await rm(join(dir, KEY_CANARY_FILE));

    const err = await refusal(configFor(dir, { master_key: newKey() }));
    expect(err.code).toBe('ERR_MASTER_KEY_MISMATCH');
    expect(err.message).toContain('Master key "default" does not match');
    expect(err.message).toContain(older!.id);
    await expect(readFile(join(dir, KEY_CANARY_FILE))).rejects.toMatchObject({ code: 'ENOENT' });

    const gw = await start(configFor(dir, { master_key: key }));
    expect((await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    expect(JSON.parse(await readFile(join(dir, KEY_CANARY_FILE), 'utf8'))).toMatchObject({ keys: { default: expect.any(String) } });
  });

  it('without a canary, refuses a key no session can prove (every file of that key damaged or gone) and seals nothing under it', async () => {
    const key = newKey();
    const { dir } = await dirWrittenWith({ master_key: key });
    const [only] = await sessionsOf(dir);
    // A header cut short: the file exists but proves nothing.
    await writeFile(only!.file, (await readFile(only!.file)).subarray(0, 7));
    await rm(join(dir, KEY_CANARY_FILE));

    for (const attempt of [newKey(), key]) {
      const err = await refusal(configFor(dir, { master_key: attempt }));
      expect(err.code).toBe('ERR_MASTER_KEY_MISMATCH');
      expect(err.message).toContain('No session could prove master key "default"');
      expect(err.message).toContain(KEY_CANARY_FILE);
      await expect(readFile(join(dir, KEY_CANARY_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
    }
  });

  it('refuses a canary that is not one instead of replacing it', async () => {
    const { dir } = await dirWrittenWith({ master_key: newKey() });
    await writeFile(join(dir, KEY_CANARY_FILE), '{"format":"sluice-key-canary-v1","keys":{}}');
    const err = await refusal(configFor(dir, { master_key: newKey() }));
    expect(err.code).toBe('ERR_MASTER_KEY_MISMATCH');
    expect(err.message).toContain('cannot be read');
  });

  it('turns /readyz unready, naming the key, when the canary under a running gateway was re-sealed by another key ring', async () => {
    const dir = await storageDir();
    const gw = await start(configFor(dir, { master_key: newKey() }));
    expect((await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);

    // What another process with its own key for "default" leaves behind.
    const other = await storageDir();
    const store = new SqliteStore({ file: ':memory:' });
    await checkKeyCanary({ dir: other, keyRing: new KeyRing([{ id: 'default', key: randomBytes(32) }]), store });
    await store.close();
    await writeFile(join(dir, KEY_CANARY_FILE), await readFile(join(other, KEY_CANARY_FILE)));

    const res = await gw.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json().checks.master_key).toMatchObject({ ok: false, code: 'ERR_MASTER_KEY_MISMATCH', message: expect.stringContaining('"default"') });
  });
});
