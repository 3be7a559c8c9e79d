import { STATUS_CODES } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { SluiceError } from '../../shared/errors.js';
import type { TunnelStream } from '../../shared/tunnel/mux.js';
import type { OpenMetadata } from '../../shared/tunnel/frames.js';

export interface LocalListenerOptions {
  bind: string;
  port: number;
  /** A stream of the tunnel for one local connection. */
  openStream(meta: OpenMetadata): Promise<TunnelStream>;
  /** Answer a local connection the tunnel could not take (an HTTP error for http connections); default: reset it. */
  refuse?(socket: Socket, err: Error): void;
}

export interface LocalListener {
  readonly port: number;
  readonly connections: { open: number; total: number };
  close(): Promise<void>;
}

/**
 * The local port of `sluice connect`: each accepted TCP connection becomes one tunnel stream, bytes
 * piped both ways with backpressure and half-close kept (an HTTP client may end its side first).
 */
export async function startLocalListener(options: LocalListenerOptions): Promise<LocalListener> {
  const sockets = new Set<Socket>();
  const connections = { open: 0, total: 0 };
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    connections.open++;
    connections.total++;
    socket.on('close', () => {
      sockets.delete(socket);
      connections.open--;
    });
    socket.on('error', () => undefined);
    socket.pause();
    options
      .openStream({ client: `${socket.remoteAddress}:${socket.remotePort}` })
      .then((stream) => join(socket, stream))
      .catch((err: Error) => {
        if (options.refuse) options.refuse(socket, err);
        else socket.destroy();
      });
  });
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
  const port = (server.address() as { port: number }).port;
  return {
    port,
    connections,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
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
  const body = JSON.stringify({ error: { type, code: error.code, message: `sluice: ${error.message}` } });
  socket.end(
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? 'Error'}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  socket.resume();
}
