/**
 * A whole gateway for integration tests: one test IdP per file, and per gateway the demo model server, a
 * TCP echo server, a TCP sink and the real app from `buildApp` listening on 127.0.0.1. Plus the small clients tests use to
 * talk to the tunnel endpoint the way the CLI does (a raw WebSocket, a TunnelMux on it) or the way an
 * attacker would (anything at all).
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { JWTPayload } from 'jose';
import { afterAll, beforeAll, onTestFinished, TestRunner } from 'vitest';
import { WebSocket } from 'ws';
import { buildApp, type BuildAppOptions } from '../../server/app.js';
import { createLiveConfig, type LiveConfig } from '../../server/config/live-config.js';
import { loadConfigFile, validateConfig } from '../../server/config/load.js';
import type { Config } from '../../server/config/schema.js';
import { DEMO_UPSTREAM_KEY, demoConfigDocument } from '../../server/demo/demo-config.js';
import { startEchoServer, type RunningEchoServer } from '../../server/demo/echo-server.js';
import type { IdpOptions } from '../../server/demo/idp.js';
import { startModelServer, type ModelServerOptions, type RunningModelServer } from '../../server/demo/model-server.js';
import { INDEX_FILE } from '../../server/recording/open-storage.js';
import { PostgresStore } from '../../server/store/postgres-store.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { SessionInfo } from '../../server/store/store.js';
import type { SessionJson, SessionListJson } from '../../shared/sessions-api.js';
import { parseControl, type ControlMessage, type HelloMessage } from '../../shared/tunnel/control.js';
import { TunnelMux, muxOptionsFromHello, type TunnelMuxOptions } from '../../shared/tunnel/mux.js';
import { testClock, type TestClock } from './clock.js';
import { signToken, startTestIdp, type TestIdp, TEST_USERS } from './oidc.js';

/** The credential the gateway injects for `llm`; the model server refuses anything else. */
export const UPSTREAM_API_KEY = 'sk-upstream-only-the-gateway-knows';

export type TestUser = keyof typeof TEST_USERS;

export interface TestGatewayOptions {
  /** Overrides of the `tunnel` section (max_streams, max_frame, window, ping_interval). */
  tunnel?: Partial<Config['tunnel']>;
  /** Options of the demo model server behind `llm`. */
  model?: ModelServerOptions;
  /** Port to listen on; default 0 (any). A fixed port lets `restart()` come back where clients expect it. */
  port?: number;
  /** Connections instead of llm/echo/sink, written against this gateway's upstreams. */
  connections?: (upstreams: TestUpstreams) => unknown[];
  /**
   * More top-level config (policies, policy_default, masking_profiles, approval, roles…) merged over the
   * defaults; `storage` and `identity` are merged key by key, so a test names only the settings it is about.
   */
  config?: Record<string, unknown>;
  /** `buildApp` options besides the config, its holder and the clock (logger, recordingIo, configDir, verifier). */
  app?: Omit<BuildAppOptions, 'config' | 'live' | 'clock'>;
  /** Keep the config in `configFile`, which `POST /v1/admin/reload` re-reads; `writeConfig` changes it. */
  reloadable?: boolean;
}

/** The upstreams a gateway's connections point at. */
export interface TestUpstreams {
  /** The demo model server; it wants `UPSTREAM_API_KEY` unless `model.apiKey` says otherwise. */
  model: RunningModelServer;
  /** `tcp://HOST:PORT` of the echo server. */
  echo: string;
  /** `tcp://HOST:PORT` of a server that reads and discards, and never answers or closes. */
  sink: string;
}

/**
 * A running gateway. Connections, unless `connections` says otherwise: `llm` (http, demo model server,
 * groups [ml-eng], upstream key injected), `echo` (tcp, echo server, [ml-eng]) and `sink` (tcp, a server
 * that reads and discards and never answers or closes, [ml-eng]: streams to it stay open for as long as
 * the test wants).
 */
export interface TestGateway {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  port: number;
  app: FastifyInstance;
  config: Config;
  /** The running configuration: `apply` changes it as a reload would, without a file. */
  live: LiveConfig;
  idp: TestIdp;
  model: RunningModelServer;
  echo: RunningEchoServer;
  /** Where recordings and the index live (a fresh directory unless `config.storage.dir` names one). */
  storageDir: string;
  /** The recordings' master key (base64): `storage.master_key`, or the first of `storage.master_keys`. */
  masterKey: string;
  /** The config file, with `reloadable`. */
  configFile?: string;
  /** What the gateway judges token expiry by: `advance` it instead of waiting for a token to expire. */
  clock: TestClock;
  /** A token for a test user, signed by the IdP's key, issued now by `clock`; `claims` override (e.g. `exp`, `sub`, `groups`). */
  token(user: TestUser, claims?: JWTPayload): Promise<string>;
  /** `ws://127.0.0.1:PORT/v1/tunnel?connection=NAME`. */
  tunnelUrl(connection: string): string;
  /** The sessions in the gateway's index, as the store lists them. */
  sessions(): Promise<SessionInfo[]>;
  /** With `reloadable`: writes the config with `changes` merged over the one the gateway started with (`storage` and `identity` key by key). */
  writeConfig(changes?: Record<string, unknown>): Promise<void>;
  /** Closes the app (tunnels get 1001 ERR_SHUTTING_DOWN); the IdP and upstreams stay up. */
  stopApp(): Promise<void>;
  /** Builds and listens a fresh app on the same port. */
  startApp(): Promise<void>;
  close(): Promise<void>;
}

/** The gateways of one test file and the one IdP they all trust. */
export interface GatewayFixture {
  /** The file's IdP (once `beforeAll` has started it). */
  readonly idp: TestIdp;
  /**
   * Starts upstreams and a gateway trusting the file's IdP. One started inside a test is closed when that
   * test ends; one started in a hook, when the file (or the `describe` that made the fixture) is done.
   */
  start(options?: TestGatewayOptions): Promise<TestGateway>;
}

async function startSink(): Promise<{ address: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.resume();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * One IdP per test file, started in `beforeAll` and stopped in `afterAll` (call this at the top of the file,
 * or of a `describe`), signing with the committed fixture key; `start` gives each test its own gateway
 * against it. `defaults` apply to every gateway of the fixture; `idp` sets up the IdP itself.
 */
export function gatewayFixture(defaults: TestGatewayOptions & { idp?: Partial<IdpOptions> } = {}): GatewayFixture {
  const { idp: idpOptions, ...gatewayDefaults } = defaults;
  let idp: TestIdp | undefined;
  /** Gateways started from hooks, closed with the fixture. */
  const lasting = new Set<() => Promise<void>>();
  beforeAll(async () => {
    idp = await startTestIdp(idpOptions);
  });
  afterAll(async () => {
    for (const close of [...lasting]) await close();
    await idp?.close();
  });
  const fileIdp = (): TestIdp => {
    if (idp === undefined) throw new Error('the fixture IdP starts in beforeAll: start gateways from a hook or a test');
    return idp;
  };
  return {
    get idp() {
      return fileIdp();
    },
    async start(options = {}) {
      const merged: TestGatewayOptions = { ...gatewayDefaults, ...options, config: { ...gatewayDefaults.config, ...options.config } };
      const inTest = TestRunner.getCurrentTest() !== undefined;
      const gateway = await startGateway(fileIdp(), merged, (close) => {
        if (inTest) onTestFinished(close);
        else lasting.add(close);
      });
      return gateway;
    },
  };
}

/**
 * An `http` connection named `llm` to the demo model, open to ml-eng, with the upstream key injected;
 * `more` adds settings or overrides these (another name, groups, `record`…).
 */
export function modelConnection(model: { url: string }, more: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'llm', type: 'http', upstream: model.url, allow_groups: ['ml-eng'], headers: { authorization: `Bearer ${UPSTREAM_API_KEY}` }, ...more };
}

/** Options for a gateway on the demo's own `llm` connection and masking profiles, as `sluice demo` sets them up. */
export function demoGatewayOptions(model: ModelServerOptions = {}): TestGatewayOptions {
  const demo = (modelUrl: string) =>
    demoConfigDocument({
      issuer: 'http://127.0.0.1:9/',
      listen: '127.0.0.1:0',
      modelUrl,
      echoAddress: '127.0.0.1:9',
      dataDir: '/nonexistent',
      masterKey: '',
      signingKeyFile: '/nonexistent.pem',
    }) as { connections: Array<{ name: string }>; masking_profiles: unknown };
  return {
    model: { apiKey: DEMO_UPSTREAM_KEY, ...model },
    connections: ({ model: server }) => demo(server.url).connections.filter((c) => c.name === 'llm'),
    config: { masking_profiles: demo('http://127.0.0.1:9').masking_profiles },
  };
}

/** Upstreams, storage and the app; `teardown` is handed the close function as soon as there is something to close. */
async function startGateway(idp: TestIdp, options: TestGatewayOptions, teardown: (close: () => Promise<void>) => void): Promise<TestGateway> {
  const closers: Array<() => Promise<void>> = [];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  };
  teardown(close);
  try {
    const model = await startModelServer({ apiKey: UPSTREAM_API_KEY, chunkDelayMs: 0, ...options.model });
    closers.push(() => model.close());
    const echo = await startEchoServer();
    closers.push(() => echo.close());
    const sink = await startSink();
    closers.push(() => sink.close());

    // recordings are always encrypted, so a gateway with connections needs a storage dir and a master key
    const root = await mkdtemp(join(tmpdir(), 'sluice-gw-'));
    closers.push(() => rm(root, { recursive: true, force: true }));
    const { storage = {}, identity = {}, ...more }: { storage?: object; identity?: object; [key: string]: unknown } = options.config ?? {};
    // A test that names its own key or key ring gets exactly that.
    const keys = 'master_key' in storage || 'master_keys' in storage ? {} : { master_key: randomBytes(32).toString('base64') };
    const upstreams: TestUpstreams = { model, echo: `tcp://${echo.address}`, sink: `tcp://${sink.address}` };
    const raw: Record<string, unknown> = {
      identity: { issuer: idp.issuer, audience: idp.audience, cli_client_id: idp.cliClientId, ...identity },
      storage: { dir: join(root, 'data'), ...keys, ...storage },
      roles: { admin: ['platform'], auditor: ['security'], reviewer: ['ml-leads'] },
      tunnel: options.tunnel ?? {},
      connections: options.connections?.(upstreams) ?? [
        modelConnection(model),
        { name: 'echo', type: 'tcp', upstream: upstreams.echo, allow_groups: ['ml-eng'] },
        { name: 'sink', type: 'tcp', upstream: upstreams.sink, allow_groups: ['ml-eng'] },
      ],
      ...more,
    };
    const configFile = options.reloadable ? join(root, 'sluice.yaml') : undefined;
    const writeConfig = async (changes: Record<string, unknown> = {}): Promise<void> => {
      if (configFile === undefined) throw new Error('writeConfig needs a gateway started with reloadable: true');
      const { storage: storageChanges, identity: identityChanges, ...rest } = changes;
      const merged = {
        ...raw,
        ...rest,
        storage: { ...(raw.storage as object), ...(storageChanges as object | undefined) },
        identity: { ...(raw.identity as object), ...(identityChanges as object | undefined) },
      };
      await writeFile(configFile, JSON.stringify(merged));
    };
    let config: Config;
    if (configFile === undefined) config = validateConfig(raw);
    else {
      await writeConfig();
      config = await loadConfigFile(configFile);
    }
    const storageDir = config.storage.dir;
    const ring = raw.storage as { master_key?: string; master_keys?: Array<{ key: string }> };
    const masterKey = ring.master_key ?? ring.master_keys?.[0]?.key ?? '';
    const clock = testClock();
    const live = createLiveConfig(config);

    let app: FastifyInstance | undefined;
    let port = options.port ?? 0;
    const startApp = async (): Promise<void> => {
      const next = await buildApp({
        logger: false,
        ...options.app,
        ...(configFile === undefined ? {} : { reloadConfig: () => loadConfigFile(configFile) }),
        config,
        live,
        clock,
      });
      await next.listen({ host: '127.0.0.1', port });
      port = (next.server.address() as AddressInfo).port;
      app = next;
    };
    const stopApp = async (): Promise<void> => {
      const current = app;
      app = undefined;
      await current?.close();
    };
    await startApp();
    closers.push(stopApp);

    return {
      get url() {
        return `http://127.0.0.1:${port}`;
      },
      get port() {
        return port;
      },
      get app() {
        if (!app) throw new Error('the gateway app is stopped');
        return app;
      },
      config,
      live,
      idp,
      model,
      echo,
      storageDir,
      masterKey,
      ...(configFile === undefined ? {} : { configFile }),
      clock,
      token: (user, claims = {}) => {
        const now = Math.floor(clock.now() / 1000);
        return signToken(idp.signingKey, idp.claimsFor(user, { iat: now, exp: now + 300, ...claims }));
      },
      tunnelUrl: (connection) => `ws://127.0.0.1:${port}/v1/tunnel?connection=${encodeURIComponent(connection)}`,
      sessions: async () => {
        const database = config.storage.database;
        const store = database === undefined ? new SqliteStore({ file: join(storageDir, INDEX_FILE) }) : await PostgresStore.open({ url: database, poolSize: 1 });
        try {
          return (await store.listSessions()).sessions;
        } finally {
          await store.close();
        }
      },
      writeConfig,
      stopApp,
      startApp,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** What a refused WebSocket upgrade answered. */
export interface RefusedUpgrade {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The parsed JSON body. */
  body: { error?: { code?: string; message?: string; [k: string]: unknown } };
}

/** Attempts the upgrade and returns the gateway's HTTP refusal; fails if the socket opens instead. */
export function refusedUpgrade(url: string, headers: Record<string, string> = {}): Promise<RefusedUpgrade> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to the upgrade of ${url}`));
    }, 10_000);
    ws.once('open', () => {
      clearTimeout(timer);
      ws.terminate();
      reject(new Error(`the gateway accepted the upgrade of ${url}`));
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        ws.terminate();
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as RefusedUpgrade['body'] });
        } catch {
          reject(new Error(`refusal body is not JSON: ${JSON.stringify(text.slice(0, 200))}`));
        }
      });
    });
  });
}

/** How a tunnel's WebSocket closed, as the client saw it. */
export interface TunnelClosed {
  code: number;
  reason: string;
  /** When the close event fired, by the `now` the tunnel was opened with (Date.now by default). */
  at: number;
}

/** A WebSocket to `/v1/tunnel` with every message logged from the first byte on. */
export interface RawTunnel {
  ws: WebSocket;
  /** The TCP socket the WebSocket was upgraded on (from ws's public `upgrade` event), for writing raw bytes; set once opened. */
  socket: () => Duplex;
  /** Text messages in arrival order, JSON-parsed when possible (the raw string otherwise). */
  texts: unknown[];
  /** Binary messages in arrival order. */
  binaries: Buffer[];
  /** Resolves once the socket is open. Rejects if the upgrade is refused. */
  opened: Promise<void>;
  /** The first text message, validated as `hello`. */
  hello: Promise<HelloMessage>;
  closed: Promise<TunnelClosed>;
  /** Resolves with the first text message (already received or future) that matches. */
  waitForText(match: (msg: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** Opens a tunnel WebSocket; terminated at the end of the test. `now` times its close (a gateway's `clock.now`). */
export function openRawTunnel(url: string, token: string | undefined, options: { teardown?: boolean; now?: () => number } = {}): RawTunnel {
  const now = options.now ?? Date.now;
  const ws = new WebSocket(url, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    perMessageDeflate: false,
  });
  if (options.teardown ?? true) onTestFinished(() => ws.terminate());
  const texts: unknown[] = [];
  const binaries: Buffer[] = [];
  const waiters = new Set<() => void>();
  ws.on('error', () => undefined);
  let upgraded: Duplex | undefined;
  ws.once('upgrade', (res) => {
    upgraded = res.socket;
  });
  const socket = (): Duplex => {
    if (upgraded === undefined) throw new Error('the WebSocket is not open yet');
    return upgraded;
  };
  ws.on('message', (data, isBinary) => {
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (isBinary) binaries.push(buf);
    else {
      const text = buf.toString('utf8');
      try {
        texts.push(JSON.parse(text));
      } catch {
        texts.push(text);
      }
    }
    for (const w of [...waiters]) w();
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
  opened.catch(() => undefined);
  const closed = new Promise<TunnelClosed>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8'), at: now() })));
  const waitForText: RawTunnel['waitForText'] = (match, timeoutMs = 10_000) =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = texts.find((t) => typeof t === 'object' && t !== null && match(t as Record<string, unknown>));
        if (found !== undefined) {
          cleanup();
          resolve(found as Record<string, unknown>);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for a control message; got ${JSON.stringify(texts)}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const hello = waitForText(() => true).then((msg) => {
    const parsed = parseControl(JSON.stringify(msg));
    if (parsed.type !== 'hello') throw new Error(`first control message is ${parsed.type}, not hello`);
    return parsed;
  });
  hello.catch(() => undefined);
  return { ws, socket, texts, binaries, opened, hello, closed, waitForText };
}

/** A raw tunnel plus a client TunnelMux created from its hello, as the CLI does. */
export async function openClientMux(
  url: string,
  token: string,
  overrides: Omit<TunnelMuxOptions, 'role'> = {},
  options: { now?: () => number } = {},
): Promise<RawTunnel & { mux: TunnelMux; helloMessage: HelloMessage }> {
  const raw = openRawTunnel(url, token, options);
  await raw.opened;
  const hello = await raw.hello;
  const mux = new TunnelMux(raw.ws, { role: 'client', ...muxOptionsFromHello(hello), ...overrides });
  mux.on('error', () => undefined);
  return { ...raw, mux, helloMessage: hello };
}

/** An HTTP answer read to its end. */
export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP/1.1 request written by Node's http client over `connection` (a tunnel stream or a socket). */
export function httpOver(
  connection: () => Duplex,
  request: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        method: request.method ?? 'GET',
        path: request.path,
        headers: { host: 'llm', ...request.headers },
        createConnection: connection as unknown as http.RequestOptions['createConnection'],
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(request.body);
  });
}

/** A chat completion request body whose answer (from the demo model) quotes `text`. */
export function chatBody(text: string, stream = false): string {
  return JSON.stringify({ model: 'demo-echo', messages: [{ role: 'user', content: text }], stream });
}

/** Polls `condition` every 5 ms until it holds; throws after `timeoutMs`. */
export async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Polls `GET /v1/sessions?status=closed` as `token` every 100 ms until the gateway lists `count` sealed
 * sessions (a proxy session is sealed once idle); returns them, newest first.
 */
export async function closedSessions(url: string, token: string, count: number, timeoutMs = 15_000): Promise<SessionJson[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${url}/v1/sessions?status=closed`, { headers: { authorization: `Bearer ${token}` } });
    const { sessions } = (await res.json()) as SessionListJson;
    if (sessions.length === count) return sessions;
    if (Date.now() > deadline) throw new Error(`${sessions.length} sessions were sealed, not ${count}`);
    await sleep(100);
  }
}

export type { ControlMessage };
