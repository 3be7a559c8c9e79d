/**
 * gRPC through the tunnel as `sluice connect` carries it: a `grpc` connection to a KServe model, a tunnel
 * and a local port whose every connection is one tunnel stream of opaque bytes, and grpc-js clients.
 * Everything opened here is closed when the test finishes.
 */
import * as grpc from '@grpc/grpc-js';
import { onTestFinished } from 'vitest';
import { startLocalListener } from '../../cli/tunnel/local-listener.js';
import { openClientMux, type TestGateway, type TestUser } from './gateway.js';
import { InferenceClient } from './kserve-model.js';

/** A `grpc` connection named `triton` to the model at `address`, open to ml-eng; `more` adds or replaces keys. */
export function tritonConnection(model: { readonly address: string }, more: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'triton', type: 'grpc', upstream: `grpc://${model.address}`, allow_groups: ['ml-eng'], ...more };
}

/** A tunnel and the local port it serves. */
export interface TunnelPort {
  /** `127.0.0.1:PORT`: each connection to it is carried by its own tunnel stream. */
  readonly address: string;
  /** The tunnel's session, from the gateway's hello. */
  readonly sessionId: string;
  /** Closes the tunnel with a normal closure, which ends (and seals) its session. */
  close(): void;
}

/** Options of `openTunnelPort`. */
export interface TunnelPortOptions {
  /** The connection to tunnel to; default `triton`. */
  readonly connection?: string;
  /** Who opens the tunnel; default alice. */
  readonly user?: TestUser;
}

/** Opens a tunnel to a connection of `gw` and a local opaque-bytes port on it, as `sluice connect` does. */
export async function openTunnelPort(gw: TestGateway, options: TunnelPortOptions = {}): Promise<TunnelPort> {
  const tunnel = await openClientMux(gw.tunnelUrl(options.connection ?? 'triton'), await gw.token(options.user ?? 'alice'));
  const close = (): void => tunnel.mux.close(1000, 'done');
  onTestFinished(close);
  const listener = await startLocalListener({
    bind: '127.0.0.1',
    port: 0,
    traffic: { protocol: 'opaque' },
    openStream: async (meta) => {
      const stream = tunnel.mux.openStream(meta);
      // Streams still open when the test closes the tunnel are reset; that is no failure of the test.
      stream.on('error', () => undefined);
      return stream;
    },
  });
  onTestFinished(() => listener.close());
  return { address: `127.0.0.1:${listener.port}`, sessionId: tunnel.helloMessage.session_id, close };
}

/** A grpc-js KServe client of `address` with insecure local credentials, closed when the test finishes. */
export function testKserveClient(address: string, options: grpc.ChannelOptions = {}): grpc.Client & Record<string, (...args: unknown[]) => unknown> {
  const client = new InferenceClient(address, grpc.credentials.createInsecure(), options) as unknown as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  onTestFinished(() => client.close());
  return client;
}
