import { constants as http2Constants, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Readable } from 'node:stream';
import { SluiceError } from '../../shared/errors.js';
import type { GrpcConnectionConfig } from '../config/schema.js';
import { GrpcFrameSplitter } from '../protocols/grpc/grpc-framing.js';
import { splitStatus, upstreamMetadata, withoutPseudoHeaders } from '../protocols/grpc/grpc-metadata.js';
import { withExchangeTrace } from '../telemetry/trace-context.js';
import { formatGrpcTimeout, parseGrpcTimeout } from '../protocols/grpc/grpc-status.js';
import { upstreamError } from './error-response.js';
import { createGrpcSessions, type GrpcSessions } from './grpc-sessions.js';
import type { Upstream, UpstreamCall, UpstreamCallOptions } from './upstream.js';

/** Reaches gRPC upstreams over pooled HTTP/2 sessions. */
export function createGrpcUpstream(): Upstream {
  const sessions = createGrpcSessions();
  return {
    call(o) {
      const call = new GrpcUpstreamCall(o, sessions);
      call.start();
      return call;
    },
    close: () => sessions.close(),
  };
}

/** The caller's deadline has passed: the call is stopped both ways and the caller told DEADLINE_EXCEEDED. */
function deadlineExceeded(connection: string, timeoutMs: number): SluiceError {
  return new SluiceError('ERR_UPSTREAM_TIMEOUT', {
    message: `The call on connection "${connection}" exceeded its deadline (${timeoutMs} ms)`,
    details: { connection },
  });
}

/**
 * One call as an HTTP/2 stream of the upstream's session: the request's messages (each recorded before it
 * is read from `body`) written to it, its response cut into whole messages for the frames, its trailers
 * (the gRPC status) passed at the end. The caller's deadline goes upstream as the time left of it, and
 * is enforced here too; aborting the call cancels the stream (RST_STREAM CANCEL), which the upstream
 * sees as the client's cancellation.
 */
class GrpcUpstreamCall implements UpstreamCall {
  readonly #o: UpstreamCallOptions;
  readonly #sessions: GrpcSessions;
  #req: ClientHttp2Stream | null = null;
  #body: Readable | null = null;
  #timer: NodeJS.Timeout | undefined;
  #requestBytes = 0;
  #done = false;

  constructor(options: UpstreamCallOptions, sessions: GrpcSessions) {
    this.#o = options;
    this.#sessions = sessions;
  }

  get requestBytes(): number {
    return this.#requestBytes;
  }

  start(): void {
    const { exchange, frames } = this.#o;
    const connection = exchange.connection as GrpcConnectionConfig;
    const fail = (err: unknown): void => {
      if (this.#done) return;
      this.#stop(err instanceof Error ? err : new Error(String(err)));
      this.#o.fail(upstreamError(err, connection.name));
    };

    const timeoutMs = parseGrpcTimeout(exchange.headers['grpc-timeout']);
    const leftMs = timeoutMs === undefined ? undefined : timeoutMs - (Date.now() - exchange.startedAt);
    if (timeoutMs !== undefined && leftMs! <= 0) {
      fail(deadlineExceeded(connection.name, timeoutMs));
      return;
    }

    let req: ClientHttp2Stream;
    try {
      const target = this.#sessions.targetFor(connection);
      const headers: OutgoingHttpHeaders = {
        ...withExchangeTrace(upstreamMetadata(exchange.headers), exchange.trace),
        ...target.injected,
        ':method': 'POST',
        ':scheme': target.scheme,
        ':authority': target.authority,
        ':path': exchange.path,
        te: 'trailers',
        'x-request-id': exchange.id,
        'x-forwarded-for': exchange.clientAddress,
        ...(leftMs === undefined ? {} : { 'grpc-timeout': formatGrpcTimeout(leftMs) }),
      };
      req = this.#sessions.sessionFor(target).request(headers, { endStream: this.#o.body === null });
    } catch (err) {
      fail(err);
      return;
    }
    this.#req = req;
    if (timeoutMs !== undefined) this.#timer = setTimeout(() => fail(deadlineExceeded(connection.name, timeoutMs)), leftMs);

    // The response: its head, whole messages (paused while the caller's side is full), then its trailers.
    const splitter = new GrpcFrameSplitter(connection.max_message, 'response');
    let trailers: IncomingHttpHeaders | undefined;
    req.on('response', (headers: IncomingHttpHeaders) => {
      const { head, status } = splitStatus(headers);
      // A trailers-only answer carries its status in the head; the caller gets it as trailers either way.
      trailers = status;
      try {
        frames.head({ status: Number(head[':status'] ?? 200), headers: withoutPseudoHeaders(head) });
      } catch (err) {
        fail(err);
      }
    });
    req.on('trailers', (t: IncomingHttpHeaders) => (trailers = t));
    req.on('error', fail);
    req.pipe(splitter);
    frames.resumeWith(() => splitter.resume());
    splitter.on('data', (frame: Buffer) => {
      if (this.#done) return;
      try {
        if (!frames.data(frame)) splitter.pause();
      } catch (err) {
        fail(err);
      }
    });
    splitter.on('error', fail);
    splitter.once('end', () => {
      if (this.#done) return;
      this.#done = true;
      clearTimeout(this.#timer);
      // The call is over once the upstream has answered it whole: what the caller still sends is not read.
      this.#body?.destroy();
      this.#o.requestEnded();
      try {
        frames.end(trailers);
      } catch (err) {
        this.#o.fail(err);
      }
    });
    req.once('close', () => {
      // Reset by the upstream before its response ended. A clean close leaves the end to the splitter, which
      // may still hold messages the caller has not taken.
      if (this.#done || req.rstCode === http2Constants.NGHTTP2_NO_ERROR) return;
      fail(new Error(`the upstream reset the call (HTTP/2 error ${req.rstCode ?? 'unknown'})`));
    });

    const body = this.#o.body;
    if (body === null) {
      this.#o.requestEnded();
      return;
    }
    if (Buffer.isBuffer(body)) {
      this.#requestBytes += body.length;
      req.end(body);
      this.#o.requestEnded();
      return;
    }
    this.#body = body;
    body.on('data', (chunk: Buffer) => {
      this.#requestBytes += chunk.length;
      if (!req.write(chunk)) body.pause();
    });
    req.on('drain', () => body.resume());
    body.once('end', () => {
      req.end();
      this.#o.requestEnded();
    });
    body.on('error', fail);
  }

  abort(reason: Error): void {
    if (this.#done) return;
    this.#stop(reason);
  }

  #stop(reason: Error): void {
    this.#done = true;
    clearTimeout(this.#timer);
    this.#body?.destroy(reason);
    // CANCEL is how a gRPC client says it gave up: the upstream stops working on the call.
    if (this.#req !== null && !this.#req.destroyed) this.#req.close(http2Constants.NGHTTP2_CANCEL);
  }
}
