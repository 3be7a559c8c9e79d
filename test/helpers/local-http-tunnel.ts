/**
 * An HTTP connection reached as `sluice connect` serves it, in-process: the CLI's tunnel client to the
 * gateway and its local listener in front, which admits callers with the local token. Both are closed
 * when the test finishes.
 */
import OpenAI from 'openai';
import { onTestFinished } from 'vitest';
import { refuseHttp, startLocalListener, type LocalListener } from '../../cli/tunnel/local-listener.js';
import { TunnelClient, type TunnelClientOptions } from '../../cli/tunnel/tunnel-client.js';
import type { HelloMessage } from '../../shared/tunnel/control.js';
import type { TestGateway, TestUser } from './gateway.js';

/** The tunnel, its local port and what a caller of that port needs. */
export interface LocalHttpTunnel {
  readonly client: TunnelClient;
  readonly hello: HelloMessage;
  readonly listener: LocalListener;
  /** What callers of the local port present as their bearer token. */
  readonly localToken: string;
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** An `openai` SDK client of the local port, as a program under `sluice connect` makes one. */
  openai(): OpenAI;
}

/** Options of `openLocalHttpTunnel`. */
export interface LocalHttpTunnelOptions {
  /** Who opens the tunnel; default alice. */
  readonly user?: TestUser;
  /** Default `sl_local_test`. */
  readonly localToken?: string;
  /** More options of the tunnel client (pending timeout, backoff). */
  readonly client?: Partial<TunnelClientOptions>;
}

/** Opens a tunnel to `connection` of `gw` and a local HTTP port on it. */
export async function openLocalHttpTunnel(gw: TestGateway, connection: string, options: LocalHttpTunnelOptions = {}): Promise<LocalHttpTunnel> {
  const token = await gw.token(options.user ?? 'alice');
  const client = new TunnelClient({ gateway: gw.url, connection, getToken: async () => ({ token }), ...options.client });
  const hello = await client.start();
  const localToken = options.localToken ?? 'sl_local_test';
  const listener = await startLocalListener({ bind: '127.0.0.1', port: 0, traffic: { protocol: 'http', token: localToken }, openStream: (meta) => client.openStream(meta), refuse: refuseHttp });
  onTestFinished(async () => {
    client.close();
    await listener.close();
  });
  const url = `http://127.0.0.1:${listener.port}`;
  return { client, hello, listener, localToken, url, openai: () => new OpenAI({ baseURL: `${url}/v1`, apiKey: localToken, maxRetries: 0 }) };
}
