import { constants as http2Constants, createServer, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { GrpcConnectionConfig } from '../config/schema.js';
import type { ExchangeHandler } from '../pipeline/run-exchange.js';
import { runGrpcExchange } from './grpc-carrier.js';
import { createGrpcDescriptorCache, type GrpcDescriptorCache } from './grpc/grpc-descriptors.js';
import type { StreamContext, StreamProtocol } from './stream-context.js';

/** Limits of the HTTP/2 server that reads tunnel streams of gRPC connections; defaults in `DEFAULT_GRPC_LIMITS`. */
export interface GrpcProtocolLimits {
  /** Most calls in flight on one tunnel stream (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxConcurrentCalls?: number;
  /** Most bytes of one call's headers (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE). */
  readonly maxHeaderListSize?: number;
}

/** Defaults of `GrpcProtocolLimits`. */
export const DEFAULT_GRPC_LIMITS = {
  maxConcurrentCalls: 100,
  maxHeaderListSize: 32 * 1024,
} as const satisfies Required<GrpcProtocolLimits>;

/** What the gRPC protocol needs: the shared exchange handler, and where connections' descriptors come from. */
export interface GrpcProtocolOptions {
  readonly exchange: ExchangeHandler;
  /** Default: a cache resolving descriptor files against the working directory. */
  readonly descriptors?: GrpcDescriptorCache;
  readonly limits?: GrpcProtocolLimits;
}

/** Context of a stream that speaks gRPC (HTTP/2 without TLS: the tunnel is the secure part). */
export type GrpcStreamContext = StreamContext<GrpcConnectionConfig>;

/**
 * Creates the gRPC protocol: Node's own HTTP/2 server, fed each tunnel stream as a connection and never
 * listening, so every call on it is one exchange through the pipeline.
 */
export function createGrpcProtocol(options: GrpcProtocolOptions): StreamProtocol<GrpcConnectionConfig> {
  const limits = { ...DEFAULT_GRPC_LIMITS, ...options.limits };
  const descriptors = options.descriptors ?? createGrpcDescriptorCache();
  const contexts = new WeakMap<Http2Session, GrpcStreamContext>();
  const sessions = new Set<Http2Session>();
  let handing: GrpcStreamContext | undefined;
  let closed = false;

  const server = createServer({
    settings: { maxConcurrentStreams: limits.maxConcurrentCalls, maxHeaderListSize: limits.maxHeaderListSize, enablePush: false },
  });
  // The server makes a session for a connection synchronously inside `emit('connection')`, so the stream's
  // context is known there: a session's own socket is only a proxy, no key to look a context up by.
  server.on('session', (session: Http2Session) => {
    if (handing === undefined) {
      session.destroy();
      return;
    }
    contexts.set(session, handing);
    sessions.add(session);
    // Failures of a session reach its calls, which the pipeline settles; none may escape as an uncaught 'error'.
    session.on('error', () => undefined);
    session.once('close', () => sessions.delete(session));
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => undefined);
    const ctx = contexts.get(stream.session!);
    if (ctx === undefined) {
      stream.close(http2Constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    runGrpcExchange(options.exchange, stream, headers, {
      principal: ctx.principal,
      connection: ctx.connection,
      session: ctx.session,
      clientAddress: ctx.clientAddress,
      descriptors,
    });
  });

  return {
    handle(stream: Duplex, context: GrpcStreamContext) {
      if (closed) {
        stream.destroy();
        return;
      }
      handing = context;
      try {
        server.emit('connection', stream);
      } finally {
        handing = undefined;
      }
    },
    async close() {
      closed = true;
      for (const session of sessions) session.destroy();
      sessions.clear();
    },
  };
}
