/**
 * Receivers of audit events the tests start on 127.0.0.1:0: an HTTP server (webhook and Splunk HEC
 * requests, answered 200 or, while `failing`, 503) and a TCP server parsing RFC 6587 octet-counted syslog
 * frames, which can be stopped and started again on its port.
 */
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface HttpDelivery {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface HttpReceiver {
  readonly url: string;
  readonly deliveries: HttpDelivery[];
  /** While true, every request is answered 503. */
  failing: boolean;
  /** Requests answered 503 so far. */
  refused: number;
  close(): Promise<void>;
}

export async function startHttpReceiver(): Promise<HttpReceiver> {
  const receiver: HttpReceiver = {
    url: '',
    deliveries: [],
    failing: false,
    refused: 0,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (receiver.failing) {
        receiver.refused++;
        res.writeHead(503).end();
        return;
      }
      receiver.deliveries.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"text":"Success","code":0}');
    });
  });
  server.keepAliveTimeout = 100;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  (receiver as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = receiver.close;
  receiver.close = () => {
    server.closeAllConnections();
    return close();
  };
  return receiver;
}

/** One parsed RFC 5424 message. */
export interface SyslogMessage {
  readonly pri: number;
  readonly version: string;
  readonly timestamp: string;
  readonly host: string;
  readonly app: string;
  readonly procid: string;
  readonly msgid: string;
  readonly sd: string;
  readonly msg: string;
}

export interface SyslogReceiver {
  readonly port: number;
  readonly messages: SyslogMessage[];
  /** Closes the listener and every connection: the receiver is down. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
}

const RFC5424 = /^<(\d{1,3})>(\d) (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\]) ([\s\S]*)$/;

export async function startSyslogReceiver(): Promise<SyslogReceiver> {
  const messages: SyslogMessage[] = [];
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = async (): Promise<void> => {
    server = createTcpServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      let buffer = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        for (;;) {
          const space = buffer.indexOf(0x20);
          if (space < 0) break;
          const length = Number(buffer.subarray(0, space).toString('ascii'));
          if (!Number.isInteger(length) || length <= 0) throw new Error(`bad octet count: ${buffer.subarray(0, space).toString()}`);
          if (buffer.length < space + 1 + length) break;
          const text = buffer.subarray(space + 1, space + 1 + length).toString('utf8');
          buffer = buffer.subarray(space + 1 + length);
          const m = RFC5424.exec(text);
          if (m === null) throw new Error(`not RFC 5424: ${text}`);
          messages.push({ pri: Number(m[1]), version: m[2]!, timestamp: m[3]!, host: m[4]!, app: m[5]!, procid: m[6]!, msgid: m[7]!, sd: m[8]!, msg: m[9]! });
        }
      });
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  };
  await listen();
  return {
    get port() {
      return port;
    },
    messages,
    async stop() {
      const s = server!;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    start: listen,
  };
}
