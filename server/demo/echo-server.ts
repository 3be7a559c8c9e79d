import { createServer, type Server, type Socket } from 'node:net';

export interface RunningEchoServer {
  address: string;
  close(): Promise<void>;
}

/** A TCP echo service on loopback; half-close is honoured (the echo ends when the input ends). */
export async function startEchoServer(options: { host?: string; port?: number } = {}): Promise<RunningEchoServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    address: `${host}:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
