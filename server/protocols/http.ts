import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HttpConnectionConfig } from '../config/schema.js';
import type { ExchangeHandler } from '../pipeline/run-exchange.js';
import { runHttpExchange } from './http-carrier.js';
import type { StreamContext, StreamProtocol } from './stream-context.js';

/** Limits of the HTTP/1.1 parser that reads tunnel streams; defaults in `DEFAULT_HTTP_LIMITS`. */
export interface HttpProtocolLimits {
  /** Most bytes of one request head. */
  readonly maxHeaderSize?: number;
  /** Time allowed for a request head to arrive, in milliseconds. */
  readonly headersTimeoutMs?: number;
  /** Time allowed for a whole request (head and body) to arrive, in milliseconds; 0 for none (long uploads). */
  readonly requestTimeoutMs?: number;
  /** Most requests on one stream; 0 for no limit. */
  readonly maxRequestsPerStream?: number;
  /** How often the header and request timeouts are checked, in milliseconds (their resolution). */
  readonly timeoutCheckIntervalMs?: number;
}

/** Defaults of `HttpProtocolLimits`. */
export const DEFAULT_HTTP_LIMITS = {
  maxHeaderSize: 32 * 1024,
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 0,
  maxRequestsPerStream: 0,
  timeoutCheckIntervalMs: 1000,
} as const satisfies Required<HttpProtocolLimits>;

/** What the HTTP protocol needs: the shared exchange handler and optional parser limits. */
export interface HttpProtocolOptions {
  readonly exchange: ExchangeHandler;
  readonly limits?: HttpProtocolLimits;
}

/** Context of a stream that speaks HTTP/1.1. */
export type HttpStreamContext = StreamContext<HttpConnectionConfig>;

/**
 * Speaks HTTP/1.1 on tunnel streams (keep-alive, pipelining, chunked bodies, Expect: 100-continue) and runs
 * each request through the exchange handler; `close` destroys every stream it was handed.
 */
export type HttpProtocol = StreamProtocol<HttpConnectionConfig>;

/**
 * Creates the HTTP protocol. It uses Node's own HTTP server as the parser, fed streams with
 * `emit('connection')`, and never listens.
 */
export function createHttpProtocol(options: HttpProtocolOptions): HttpProtocol {
  const limits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
  const { exchange } = options;
  const contexts = new WeakMap<Duplex, HttpStreamContext>();
  const streams = new Set<Duplex>();
  let closed = false;

  const server = createServer({
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: limits.timeoutCheckIntervalMs,
    // The stream's life belongs to the tunnel (or the local socket), not to an idle timer here.
    keepAliveTimeout: 0,
  });
  server.maxRequestsPerSocket = limits.maxRequestsPerStream;

  const onRequest = (req: IncomingMessage, res: ServerResponse, awaitingContinue: boolean): void => {
    const ctx = contexts.get(req.socket);
    if (ctx === undefined) {
      res.destroy();
      return;
    }
    if (ctx.onExchange) {
      ctx.onExchange('start');
      res.once('close', () => ctx.onExchange!('end', res.headersSent ? res.statusCode : 0));
    }
    // The pipeline normalises the target (and refuses, on the record, absolute-form and "*" targets: the
    // upstream is the connection's, never a host the caller names).
    const path = req.url ?? '';
    runHttpExchange(exchange, req, res, {
      principal: ctx.principal,
      connection: ctx.connection,
      session: ctx.session,
      clientAddress: ctx.clientAddress,
      via: 'tunnel',
      path,
      awaitingContinue,
    });
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, false));
  // Answered by the exchange handler once the request may go upstream, so a refused request never uploads its body.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, true));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Node answers parse errors itself only through this hook; a bad request gets a 400 and the stream ends.
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const body = JSON.stringify({ error: { type: 'invalid_request_error', code: 'ERR_BAD_REQUEST', message: `Malformed HTTP request (${err.code ?? err.message})` } });
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  // Node starts the checker that enforces headersTimeout and requestTimeout on 'listening'; this server
  // never listens, so the event is what turns those limits on for the streams it is fed.
  server.emit('listening');

  return {
    handle(stream, context) {
      if (closed) {
        stream.destroy();
        return;
      }
      // Node's HTTP server disables Nagle on sockets it accepts itself; streams fed to it are ours to set.
      // A tunnel stream has a no-op setNoDelay; a local socket handed over directly needs it, or a response
      // head written ahead of its body waits for the client's delayed ACK.
      (stream as Partial<Socket>).setNoDelay?.(true);
      contexts.set(stream, context);
      streams.add(stream);
      stream.once('close', () => streams.delete(stream));
      server.emit('connection', stream);
    },
    async close() {
      closed = true;
      // Clears the timeout checker; the server never listened, so "not running" is expected.
      server.close(() => undefined);
      for (const stream of streams) stream.destroy();
      streams.clear();
    },
  };
}
