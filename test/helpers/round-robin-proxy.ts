/**
 * A TCP load balancer for tests, as a plain layer-4 balancer in front of replicas works: each new client
 * connection goes to the next backend in turn, a backend that refuses the connection (a killed replica) is
 * skipped for the next one, and bytes are relayed both ways untouched, so HTTP keep-alive and WebSocket
 * upgrades stay on the backend their connection landed on. It reports which backend each connection went
 * to, and what the client sent first, so a test can tell which replica holds a tunnel or a call.
 */
import { connect, createServer, type Socket } from 'node:net';
import { listenOnLoopback } from './loopback.js';

/** A backend the proxy may hand connections to. */
export interface ProxyBackend {
  readonly host?: string;
  readonly port: number;
}

/** One client connection, as the proxy placed it. */
export interface ProxiedConnection {
  /** Index into the backends of the backend that accepted it. */
  readonly backend: number;
  /** The first line the client sent (an HTTP request line such as `GET /v1/tunnel?connection=llm HTTP/1.1`); '' before any byte. */
  head: string;
  /** True once either side closed it. */
  closed: boolean;
}

export interface RoundRobinProxy {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** Every connection placed on a backend, in the order the clients opened them. */
  readonly connections: readonly ProxiedConnection[];
  /** Connections refused because no backend accepted them. */
  readonly unplaced: number;
  /** Stops listening and cuts every relayed connection. */
  close(): Promise<void>;
}

/** The longest first line kept per connection: enough for a request line, bounded whatever a client sends. */
const MAX_HEAD = 512;

function dial(backend: ProxyBackend): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: backend.host ?? '127.0.0.1', port: backend.port, allowHalfOpen: true });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Starts the proxy on 127.0.0.1, port 0, in front of `backends`. */
export async function startRoundRobinProxy(backends: readonly ProxyBackend[]): Promise<RoundRobinProxy> {
  if (backends.length === 0) throw new Error('a round-robin proxy needs at least one backend');
  const connections: ProxiedConnection[] = [];
  const sockets = new Set<Socket>();
  let next = 0;
  let unplaced = 0;

  /** The first backend from the next in turn that accepts a connection, or undefined when none does. */
  const place = async (): Promise<{ index: number; socket: Socket } | undefined> => {
    const start = next;
    next = (next + 1) % backends.length;
    for (let i = 0; i < backends.length; i++) {
      const index = (start + i) % backends.length;
      try {
        return { index, socket: await dial(backends[index]!) };
      } catch {
        // Refused (a stopped replica): the next one gets it, as a balancer's health check would arrange.
      }
    }
    return undefined;
  };

  // Half-open on both sides: a client's FIN is passed on as a FIN, and the answer still comes back.
  const server = createServer({ allowHalfOpen: true }, (client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    // No reader on the client until its backend is chosen: what it sends meanwhile waits in the socket.
    void place().then((placed) => {
      if (placed === undefined || client.destroyed) {
        if (placed === undefined) unplaced++;
        placed?.socket.destroy();
        client.destroy();
        return;
      }
      const upstream = placed.socket;
      sockets.add(upstream);
      const record: ProxiedConnection = { backend: placed.index, head: '', closed: false };
      connections.push(record);
      let seen = '';
      const capture = (chunk: Buffer): void => {
        seen += chunk.toString('latin1', 0, Math.min(chunk.length, MAX_HEAD));
        const end = seen.indexOf('\r\n');
        if (end >= 0 || seen.length >= MAX_HEAD) {
          record.head = seen.slice(0, end >= 0 ? end : MAX_HEAD);
          client.off('data', capture);
        }
      };
      client.on('data', capture);
      // A reset on one side is a reset on the other, as when a replica dies under its callers.
      const cut = (): void => {
        record.closed = true;
        client.destroy();
        upstream.destroy();
      };
      upstream.on('error', cut);
      client.on('error', cut);
      upstream.on('close', cut);
      client.on('close', cut);
      upstream.on('close', () => sockets.delete(upstream));
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  const port = await listenOnLoopback(server);

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    connections,
    get unplaced() {
      return unplaced;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
