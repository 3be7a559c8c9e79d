import { getAccessToken, type AccessToken } from '../auth/access-token.js';
import { openLocalState } from '../auth/local-state.js';
import type { CliContext } from '../context.js';
import { VERSION } from '../../shared/version.js';
import type { HelloMessage } from '../../shared/tunnel/control.js';
import { refuseHttp, startLocalListener, type LocalListener } from './local-listener.js';
import { newLocalToken } from './local-token.js';
import { isLoopbackHost } from './loopback.js';
import { TunnelClient } from './tunnel-client.js';

export interface OpenTunnelOptions {
  connection: string;
  port: number;
  bind: string;
  /** Listen on this Unix socket (mode 0600) instead of `bind` and `port`. */
  socket?: string;
  /** Require the local token on every request of an http connection; false only for `--no-local-auth`. */
  localAuth: boolean;
  reason?: string;
}

export interface OpenTunnel {
  gateway: string;
  client: TunnelClient;
  listener: LocalListener;
  hello: HelloMessage;
  /** `http://127.0.0.1:PORT` for http connections, `127.0.0.1:PORT` for tcp; none on a Unix socket. */
  localUrl?: string;
  /** The Unix socket path, with `--socket`. */
  localSocket?: string;
  /** The base URL OpenAI-style clients take (`…/v1`), for http connections on a TCP port. */
  openAiBaseUrl?: string;
  /** The secret every request to the local port must carry; null for tcp connections and `--no-local-auth`. */
  localToken: string | null;
  /** What the user must hear about this setup (a non-loopback bind, the local token turned off). */
  warnings: string[];
  close(): Promise<void>;
}

/** A token source for a long-running tunnel: local state opened once, refreshed on demand. */
async function tokenSource(ctx: CliContext): Promise<{ first: AccessToken; get(fresh: boolean): Promise<AccessToken> }> {
  const profile = ctx.profile();
  if (ctx.env.SLUICE_TOKEN?.trim()) {
    const first = await getAccessToken({ profile, env: ctx.env });
    return { first, get: async () => first };
  }
  const { profiles, store } = await openLocalState({ env: ctx.env });
  const get = (fresh: boolean) => getAccessToken({ profile, env: ctx.env, profiles, store, forceRefresh: fresh });
  return { first: await get(false), get };
}

/** Connect the tunnel (failing fast when the gateway refuses), then open the local port. */
export async function openTunnel(ctx: CliContext, options: OpenTunnelOptions): Promise<OpenTunnel> {
  const tokens = await tokenSource(ctx);
  const gateway = tokens.first.gateway;
  const client = new TunnelClient({
    gateway,
    connection: options.connection,
    reason: options.reason,
    getToken: (fresh) => tokens.get(fresh),
    userAgent: `sluice-cli/${VERSION}`,
  });
  const hello = await client.start();
  const isHttp = hello.connection.type === 'http';
  // Made per tunnel and never stored: it lives as long as the local port it guards.
  const localToken = isHttp && options.localAuth ? newLocalToken() : null;
  let listener: LocalListener;
  try {
    listener = await startLocalListener({
      bind: options.bind,
      port: options.port,
      socket: options.socket,
      traffic: isHttp ? { protocol: 'http', token: localToken } : { protocol: 'opaque' },
      openStream: (meta) => client.openStream(meta),
      refuse: hello.connection.type === 'http' ? (socket, err) => {
        client.emit('event', { kind: 'notice', level: 'warn', message: `a local connection was refused: ${err.message}` });
        refuseHttp(socket, err);
      } : undefined,
    });
  } catch (err) {
    client.close();
    throw err;
  }
  const host = options.bind.includes(':') ? `[${options.bind}]` : options.bind;
  const localUrl = options.socket ? undefined : isHttp ? `http://${host}:${listener.port}` : `${host}:${listener.port}`;
  return {
    gateway,
    client,
    listener,
    hello,
    localUrl,
    localSocket: options.socket,
    openAiBaseUrl: isHttp && localUrl ? `${localUrl}/v1` : undefined,
    localToken,
    warnings: tunnelWarnings(options, isHttp),
    async close() {
      client.close();
      await listener.close();
    },
  };
}

/** Warnings about a local endpoint that others may reach. */
function tunnelWarnings(options: OpenTunnelOptions, isHttp: boolean): string[] {
  const warnings: string[] = [];
  if (!options.socket && !isLoopbackHost(options.bind)) {
    warnings.push(
      `--bind ${options.bind} is not a loopback address: the local port can be reached from other machines` +
        (isHttp && options.localAuth ? ', guarded only by the local token' : ', and whoever reaches it uses the connection as you'),
    );
  }
  if (isHttp && !options.localAuth) {
    warnings.push('--no-local-auth: any local user can call this connection through the local port, recorded as you');
  }
  return warnings;
}
