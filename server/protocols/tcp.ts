import type { Duplex } from 'node:stream';
import type { TcpConnectionConfig } from '../config/schema.js';
import type { ExchangeHandler } from '../pipeline/run-exchange.js';
import type { StreamContext, StreamProtocol } from './stream-context.js';
import { TCP_RECORDING, TcpCarrier } from './tcp-carrier.js';
import { startTunnelExchange } from './tunnel-exchange.js';

/** What the TCP protocol needs: the shared exchange handler. */
export interface TcpProtocolOptions {
  readonly exchange: ExchangeHandler;
}

/** Context of a stream that carries opaque TCP bytes. */
export type TcpStreamContext = StreamContext<TcpConnectionConfig>;

/** Carries opaque bytes between tunnel streams and TCP upstreams; errors on either side reset both. */
export type TcpProtocol = StreamProtocol<TcpConnectionConfig>;

function ignore(): void {}

/**
 * Creates the TCP protocol. One stream is one exchange of method CONNECT through the same pipeline as HTTP:
 * access, policy (which sees no body), recorded before connecting, its bytes each way through the
 * recorder's tap (a chunk that cannot be recorded resets the stream), and at the end with byte counts.
 */
export function createTcpProtocol(options: TcpProtocolOptions): TcpProtocol {
  const open = new Set<Duplex>();
  let closed = false;
  return {
    handle(stream, ctx) {
      if (closed) {
        stream.destroy();
        return;
      }
      open.add(stream);
      stream.once('close', () => open.delete(stream));
      // From here on the pipeline owns the stream's failures; they end in a reset, never in an uncaught 'error'.
      stream.on('error', ignore);
      const exchange = startTunnelExchange(
        ctx,
        { method: 'CONNECT', path: ctx.connection.upstream.slice('tcp://'.length).replace(/\/$/, ''), headers: {} },
        TCP_RECORDING,
      );
      options.exchange.runExchange(exchange, new TcpCarrier(stream, ctx.connection.name));
    },
    async close() {
      closed = true;
      for (const s of open) s.destroy();
      open.clear();
    },
  };
}
