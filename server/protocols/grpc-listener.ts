import { createSecureServer, createServer, type Http2SecureServer, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { urlHost, type ListenAddress } from '../listen-address.js';
import { listenOn } from '../listen-probe.js';
import { DEFAULT_GRPC_LIMITS, type GrpcProtocolLimits } from './grpc.js';
import type { GrpcDirectCalls } from './grpc-direct.js';

/** Options of the gRPC listener; the limits default to those of the tunnel's gRPC protocol. */
export interface GrpcListenerOptions {
  /** The gateway's certificate and key (`tls`): the listener speaks HTTP/2 over TLS (ALPN h2); absent, h2c. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
  readonly limits?: GrpcProtocolLimits;
}

/** The gateway's own gRPC listener (`grpc_listen`), for agents that call gRPC connections without the CLI. */
export interface GrpcListener {
  /** `http://HOST:PORT` (h2c) or `https://HOST:PORT` (TLS). */
  readonly url: string;
  /**
   * Stops accepting connections and tells every client to go away (GOAWAY), letting the calls in flight
   * finish; resolves once the last connection has closed.
   */
  drain(): Promise<void>;
  /** Cuts every connection and stops listening. */
  close(): Promise<void>;
}

/**
 * Listens on `address` and hands every call to `calls`. Throws ERR_LISTEN_FAILED when the address cannot
 * be bound.
 */
export async function startGrpcListener(address: ListenAddress, calls: GrpcDirectCalls, options: GrpcListenerOptions = {}): Promise<GrpcListener> {
  const limits = { ...DEFAULT_GRPC_LIMITS, ...options.limits };
  const settings = { maxConcurrentStreams: limits.maxConcurrentCalls, maxHeaderListSize: limits.maxHeaderListSize, enablePush: false };
  // HTTP/1 is never offered: a gRPC call is HTTP/2, and a bearer token has no business on anything else here.
  const server: Http2Server | Http2SecureServer =
    options.tls === undefined ? createServer({ settings }) : createSecureServer({ settings, cert: options.tls.cert, key: options.tls.key, allowHTTP1: false });
  const sessions = new Set<Http2Session>();
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    // A session's failure reaches its calls, which the pipeline settles; none may escape as an uncaught 'error'.
    session.on('error', () => undefined);
    session.once('close', () => sessions.delete(session));
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    calls.handle(stream, headers, stream.session?.socket?.remoteAddress ?? '');
  });
  // A TLS client that did not negotiate h2 gets no answer: there is nothing here for it.
  server.on('unknownProtocol', (socket) => socket.destroy());
  const port = await listenOn(server, address);
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  const stopAccepting = (): void => {
    if (server.listening) server.close();
  };
  return {
    url: `${options.tls === undefined ? 'http' : 'https'}://${urlHost({ host: address.host, port })}`,
    async drain() {
      stopAccepting();
      // close() sends GOAWAY and ends the session once its open streams have ended.
      for (const session of sessions) session.close();
      await closed;
    },
    async close() {
      stopAccepting();
      for (const session of sessions) session.destroy();
      await closed;
    },
  };
}
