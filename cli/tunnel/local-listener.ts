import { createServer, type Server, type Socket } from 'node:net';
import { SluiceError } from '../../shared/errors.js';
import type { TunnelStream } from '../../shared/tunnel/mux-stream.js';
import type { OpenMetadata } from '../../shared/tunnel/frames.js';
import { serveGuardedHttp } from './http-local-guard.js';
import { answerLocally } from './local-http-answer.js';
import { claimSocketPath, listenOwnerOnly } from './local-socket.js';
import { corkEachTurn } from './socket-turn-cork.js';

/**
 * What local connections carry. `http`: every request must carry `token`, checked before anything enters the
 * tunnel; `null` only when the user turned the check off (`--no-local-auth`). `opaque` (tcp connections): no
 * headers to check, the bytes are piped as they come; only the bind address or `socket` keeps others out.
 */
export type LocalTraffic = { protocol: 'http'; token: string | null } | { protocol: 'opaque' };

export interface LocalListenerOptions {
  bind: string;
  port: number;
  /** Listen on this Unix socket (mode 0600) instead of `bind` and `port`. */
  socket?: string;
  /** No default: a listener that forgot the local token must not quietly serve without it. */
  traffic: LocalTraffic;
  /** Largest HTTP request head on the local port, in bytes. Default 32 KiB, as the gateway's parser. */
  maxHeadBytes?: number;
  /** A stream of the tunnel for one local connection. */
  openStream(meta: OpenMetadata): Promise<TunnelStream>;
  /** Answer a local connection the tunnel could not take (an HTTP error for http connections); default: reset it. */
  refuse?(socket: Socket, err: Error): void;
}

/** Defaults of `LocalListenerOptions`. */
export const DEFAULT_LOCAL_LISTENER = { maxHeadBytes: 32 * 1024 } as const;

export interface LocalListener {
  /** The TCP port; 0 when listening on a Unix socket. */
  readonly port: number;
  /** The Unix socket path, when listening on one. */
  readonly socket?: string;
  readonly connections: { open: number; total: number };
  close(): Promise<void>;
}

/**
 * The local port of `sluice connect`: each accepted connection becomes one tunnel stream, bytes piped both
 * ways with backpressure and half-close kept (an HTTP client may end its side first). On http connections
 * with a local token the stream is opened only for a request that carries it (see `serveGuardedHttp`).
 */
export async function startLocalListener(options: LocalListenerOptions): Promise<LocalListener> {
  const { traffic } = options;
  if (traffic?.protocol !== 'http' && traffic?.protocol !== 'opaque') throw new TypeError('startLocalListener needs options.traffic');
  const maxHeadBytes = options.maxHeadBytes ?? DEFAULT_LOCAL_LISTENER.maxHeadBytes;
  const sockets = new Set<Socket>();
  const connections = { open: 0, total: 0 };
  const refuse = (socket: Socket, err: Error) => {
    if (options.refuse) options.refuse(socket, err);
    else socket.destroy();
  };
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    connections.open++;
    connections.total++;
    socket.on('close', () => {
      sockets.delete(socket);
      connections.open--;
    });
    socket.on('error', () => undefined);
    const meta = { client: options.socket ? 'unix socket' : `${socket.remoteAddress}:${socket.remotePort}` };
    if (traffic.protocol === 'http' && traffic.token !== null) {
      serveGuardedHttp(socket, { token: traffic.token, maxHeadBytes, openStream: () => options.openStream(meta), refuse });
      return;
    }
    socket.pause();
    options
      .openStream(meta)
      .then((stream) => join(socket, stream))
      .catch((err: Error) => refuse(socket, err));
  });
  if (options.socket) {
    await claimSocketPath(options.socket);
    await listenOwnerOnly(server, options.socket);
  } else {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'EADDRINUSE'
            ? new SluiceError('ERR_USAGE', { message: `Port ${options.port} on ${options.bind} is already in use: pick another with --port` })
            : err,
        ),
      );
      server.listen(options.port, options.bind, () => resolve());
    });
  }
  const port = options.socket ? 0 : (server.address() as { port: number }).port;
  return {
    port,
    socket: options.socket,
    connections,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        // Node removes the socket file of a Unix socket it listened on when the server closes.
        server.close(() => resolve());
      }),
  };
}

/** Pipe a local socket and a tunnel stream into each other; either side failing resets the other. */
function join(socket: Socket, stream: TunnelStream): void {
  if (socket.destroyed) {
    stream.destroy();
    return;
  }
  socket.pipe(stream);
  corkEachTurn(stream, socket);
  stream.pipe(socket);
  socket.resume();
  // A reset on either side must not look like a clean end to the other.
  stream.on('error', () => {
    if (!socket.destroyed) socket.resetAndDestroy();
  });
  socket.on('error', () => stream.destroy());
  socket.on('close', () => {
    if (!stream.destroyed && !stream.writableFinished) stream.destroy();
  });
  stream.on('close', () => {
    if (!socket.destroyed && !socket.writableFinished) socket.destroy();
  });
}

/**
 * Answer an HTTP client whose connection the tunnel could not take with an OpenAI-style error (429 when the
 * tunnel carries its maximum of streams, 502 while the gateway is unreachable), so SDKs show why.
 */
export function refuseHttp(socket: Socket, err: Error): void {
  const error = err instanceof SluiceError ? err : new SluiceError('ERR_GATEWAY_UNREACHABLE', { message: err.message });
  const type = error.status === 429 ? 'rate_limit_error' : error.status === 401 ? 'authentication_error' : error.status === 403 ? 'permission_error' : 'server_error';
  answerLocally(socket, error, { type });
}
