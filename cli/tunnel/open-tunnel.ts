import { getAccessToken, type AccessToken } from '../auth/access-token.js';
import { openLocalState } from '../auth/local-state.js';
import type { CliContext } from '../context.js';
import { VERSION } from '../../shared/version.js';
import type { HelloMessage } from '../../shared/tunnel/control.js';
import { refuseHttp, startLocalListener, type LocalListener } from './local-listener.js';
import { TunnelClient } from './tunnel-client.js';

export interface OpenTunnelOptions {
  connection: string;
  port: number;
  bind: string;
  reason?: string;
}

export interface OpenTunnel {
  gateway: string;
  client: TunnelClient;
  listener: LocalListener;
  hello: HelloMessage;
  /** `http://127.0.0.1:PORT` for http connections, `127.0.0.1:PORT` for tcp. */
  localUrl: string;
  /** The base URL OpenAI-style clients take (`…/v1`), for http connections. */
  openAiBaseUrl?: string;
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
  let listener: LocalListener;
  try {
    listener = await startLocalListener({
      bind: options.bind,
      port: options.port,
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
  const isHttp = hello.connection.type === 'http';
  const localUrl = isHttp ? `http://${host}:${listener.port}` : `${host}:${listener.port}`;
  return {
    gateway,
    client,
    listener,
    hello,
    localUrl,
    openAiBaseUrl: isHttp ? `${localUrl}/v1` : undefined,
    async close() {
      client.close();
      await listener.close();
    },
  };
}
