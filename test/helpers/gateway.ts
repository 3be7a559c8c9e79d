/**
 * A whole gateway for integration tests: the test IdP, the demo model server, a TCP echo server and a
 * TCP sink, and the real app from `buildApp` listening on 127.0.0.1. Plus the small clients tests use to
 * talk to the tunnel endpoint the way the CLI does (a raw WebSocket, a TunnelMux on it) or the way an
 * attacker would (anything at all).
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { JWTPayload } from 'jose';
import { onTestFinished } from 'vitest';
import { WebSocket } from 'ws';
import { buildApp } from '../../server/app.js';
import { validateConfig } from '../../server/config/load.js';
import type { Config } from '../../server/config/schema.js';
import { startEchoServer, type RunningEchoServer } from '../../server/demo/echo-server.js';
import { startModelServer, type ModelServerOptions, type RunningModelServer } from '../../server/demo/model-server.js';
import { parseControl, type ControlMessage, type HelloMessage } from '../../shared/tunnel/control.js';
import { TunnelMux, muxOptionsFromHello, type TunnelMuxOptions } from '../../shared/tunnel/mux.js';
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
  /**
   * `test` (default): everything is torn down with `onTestFinished`. `manual`: the caller calls `close()`
   * (from `afterAll` when one gateway serves a whole file).
   */
  teardown?: 'test' | 'manual';
  /** More top-level config (policies, policy_default, masking_profiles…), merged over the defaults. */
  config?: Record<string, unknown>;
}

/**
 * A running gateway. Connections: `llm` (http, demo model server, groups [ml-eng], upstream key injected),
 * `echo` (tcp, echo server, [ml-eng]) and `sink` (tcp, a server that reads and discards and never answers
 * or closes, [ml-eng]: streams to it stay open for as long as the test wants).
 */
export interface TestGateway {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  port: number;
  app: FastifyInstance;
  config: Config;
  idp: TestIdp;
  model: RunningModelServer;
  echo: RunningEchoServer;
  /** A token for a test user, signed by the IdP's own key; `claims` override (e.g. `exp`, `sub`, `groups`). */
  token(user: TestUser, claims?: JWTPayload): Promise<string>;
  /** `ws://127.0.0.1:PORT/v1/tunnel?connection=NAME`. */
  tunnelUrl(connection: string): string;
  /** Closes the app (tunnels get 1001 ERR_SHUTTING_DOWN); the IdP and upstreams stay up. */
  stopApp(): Promise<void>;
  /** Builds and listens a fresh app on the same port. */
  startApp(): Promise<void>;
  close(): Promise<void>;
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

/** Starts IdP, upstreams and gateway; tears them down at the end of the test unless `teardown: 'manual'`. */
export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const closers: Array<() => Promise<void>> = [];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  };
  if ((options.teardown ?? 'test') === 'test') onTestFinished(close);
  try {
    const idp = await startTestIdp();
    closers.push(() => idp.close());
    const model = await startModelServer({ apiKey: UPSTREAM_API_KEY, chunkDelayMs: 0, ...options.model });
    closers.push(() => model.close());
    const echo = await startEchoServer();
    closers.push(() => echo.close());
    const sink = await startSink();
    closers.push(() => sink.close());

    // recordings are always encrypted, so a gateway with connections needs a storage dir and a master key
    const storageDir = await mkdtemp(join(tmpdir(), 'sluice-gw-'));
    closers.push(() => rm(storageDir, { recursive: true, force: true }));

    const config = validateConfig({
      identity: { issuer: idp.issuer, audience: idp.audience, cli_client_id: idp.cliClientId },
      storage: { dir: storageDir, master_key: randomBytes(32).toString('base64') },
      roles: { admin: ['platform'], auditor: ['security'], reviewer: ['ml-leads'] },
      tunnel: options.tunnel ?? {},
      connections: [
        {
          name: 'llm',
          type: 'http',
          upstream: model.url,
          allow_groups: ['ml-eng'],
          headers: { authorization: `Bearer ${UPSTREAM_API_KEY}` },
        },
        { name: 'echo', type: 'tcp', upstream: `tcp://${echo.address}`, allow_groups: ['ml-eng'] },
        { name: 'sink', type: 'tcp', upstream: `tcp://${sink.address}`, allow_groups: ['ml-eng'] },
      ],
      ...options.config,
    });

    let app: FastifyInstance | undefined;
    let port = options.port ?? 0;
    const startApp = async (): Promise<void> => {
      const next = await buildApp({ config, logger: false });
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
      idp,
      model,
      echo,
      token: (user, claims = {}) => signToken(idp.signingKey, idp.claimsFor(user, claims)),
      tunnelUrl: (connection) => `ws://127.0.0.1:${port}/v1/tunnel?connection=${encodeURIComponent(connection)}`,
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
  /** Date.now() when the close event fired. */
  at: number;
}

/** A WebSocket to `/v1/tunnel` with every message logged from the first byte on. */
export interface RawTunnel {
  ws: WebSocket;
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

/** Opens a tunnel WebSocket; terminated at the end of the test. */
export function openRawTunnel(url: string, token: string | undefined, options: { teardown?: boolean } = {}): RawTunnel {
  const ws = new WebSocket(url, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    perMessageDeflate: false,
  });
  if (options.teardown ?? true) onTestFinished(() => ws.terminate());
  const texts: unknown[] = [];
  const binaries: Buffer[] = [];
  const waiters = new Set<() => void>();
  ws.on('error', () => undefined);
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
  const closed = new Promise<TunnelClosed>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8'), at: Date.now() })));
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
  return { ws, texts, binaries, opened, hello, closed, waitForText };
}

/** A raw tunnel plus a client TunnelMux created from its hello, as the CLI does. */
export async function openClientMux(
  url: string,
  token: string,
  overrides: Omit<TunnelMuxOptions, 'role'> = {},
): Promise<RawTunnel & { mux: TunnelMux; helloMessage: HelloMessage }> {
  const raw = openRawTunnel(url, token);
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

export type { ControlMessage };
