import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { HttpConnectionConfig } from '../config/schema.js';
import { BoundedBody } from './bounded-body.js';
import { upstreamError } from './error-response.js';
import { upstreamRequestHeaders } from './forward-headers.js';
import { checkRequestPath } from './request-path.js';
import type { Upstream, UpstreamCall, UpstreamCallOptions } from './upstream.js';
import type { UpstreamPools, UpstreamRoute } from './upstream-pools.js';
import { forwardedPath } from './upstream-target.js';

/** What the HTTP upstream needs: the keep-alive pools, and whether closing it closes them. */
export interface HttpUpstreamOptions {
  readonly pools: UpstreamPools;
  readonly ownsPools: boolean;
}

/** Reaches HTTP/1.1 upstreams through undici's keep-alive pools. */
export function createHttpUpstream(options: HttpUpstreamOptions): Upstream {
  const { pools } = options;
  return {
    call(o) {
      const call = new HttpUpstreamCall(o, pools.routeFor(o.exchange.connection as HttpConnectionConfig));
      call.start();
      return call;
    },
    async close() {
      if (options.ownsPools) await pools.close();
    },
  };
}

/** Whether undici's trailers hold any: a response without them still reports an empty object. */
function someTrailers(trailers: IncomingHttpHeaders | null | undefined): trailers is IncomingHttpHeaders {
  if (trailers === null || trailers === undefined) return false;
  for (const _ in trailers) return true;
  return false;
}

/**
 * One request through undici's low-level `dispatch`: the response goes from the upstream socket to the
 * frames with no stream of its own, and the upstream is paused whenever the frames ask (the caller's side
 * is full) until they resume it. A pause takes effect at undici's next chunk, so a full caller is given at most
 * the read at hand and one chunk more. Once the response is over, a resume goes nowhere: undici's resume is
 * the socket's, which by then may carry another request, paused by its own caller.
 *
 * undici hands over a chunked body one HTTP chunk at a time, all of one socket read in one go: an answer
 * streamed in a burst (a model that writes its tokens faster than they travel) arrives as a hundred
 * chunks in two or three reads. The chunks of one read go to the frames together, once that read is
 * parsed, so masking, recording and the write to the caller run once per read rather than once per chunk.
 * What arrives paced (a token at a time) is one chunk per read and goes on as it did.
 */
class HttpUpstreamCall implements Dispatcher.DispatchHandler, UpstreamCall {
  readonly #o: UpstreamCallOptions;
  readonly #route: UpstreamRoute;
  #controller: Dispatcher.DispatchController | null = null;
  #aborted = false;
  /** The response has ended or failed. */
  #over = false;
  /** Chunks of the socket read being parsed, passed on together once it is (see the class comment). */
  #read: Buffer[] | null = null;

  constructor(options: UpstreamCallOptions, route: UpstreamRoute) {
    this.#o = options;
    this.#route = route;
  }

  get requestBytes(): number {
    const { body } = this.#o;
    return body === null ? 0 : Buffer.isBuffer(body) ? body.length : body instanceof BoundedBody ? body.bytes : 0;
  }

  start(): void {
    const { exchange, frames, secure, body } = this.#o;
    const { target, pool } = this.#route;
    let path: string;
    try {
      // Whatever handed the pipeline its path, the upstream gets only a normalised one under its base path.
      checkRequestPath(exchange.path);
      path = forwardedPath(target, exchange.path);
    } catch (err) {
      this.abort(err as Error);
      this.#o.fail(err);
      return;
    }
    frames.resumeWith(() => {
      if (!this.#over) this.#controller?.resume();
    });
    pool.dispatch(
      {
        origin: target.origin,
        path,
        method: exchange.method as Dispatcher.HttpMethod,
        headers: upstreamRequestHeaders(exchange.headers, target, { requestId: exchange.id, clientAddress: exchange.clientAddress, proto: secure ? 'https' : 'http', trace: exchange.trace }),
        body: body as Buffer | Readable | null,
        headersTimeout: target.responseTimeoutMs,
        // Between two body chunks: a model that goes silent mid-stream for this long is treated as gone.
        bodyTimeout: target.responseTimeoutMs,
      },
      this,
    );
    // An HTTP exchange ends with its response; the request body's bytes are counted as they go.
    this.#o.requestEnded();
  }

  abort(reason: Error): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#controller?.abort(reason);
    const { body } = this.#o;
    if (body !== null && !Buffer.isBuffer(body)) body.destroy();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#aborted) controller.abort(new Error('The exchange was stopped before it reached the upstream'));
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    // Informational answers (100 Continue to undici's own request) are not the response.
    if (status < 200 || this.#aborted) return;
    try {
      this.#o.frames.head({ status, headers });
    } catch (err) {
      this.#o.fail(err);
    }
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#aborted) return;
    if (this.#read !== null) {
      this.#read.push(chunk);
      return;
    }
    this.#read = [chunk];
    // undici parses a read in one synchronous run; a microtask comes after all of it.
    queueMicrotask(() => this.#passRead());
  }

  /** Passes on the chunks gathered from one socket read, pausing the upstream when the frames are full. */
  #passRead(): void {
    const read = this.#read;
    this.#read = null;
    if (read === null || this.#aborted) return;
    try {
      if (!this.#o.frames.data(read.length === 1 ? read[0]! : Buffer.concat(read))) this.#controller?.pause();
    } catch (err) {
      this.#o.fail(err);
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.#over = true;
    if (this.#aborted) return;
    // The last read's chunks come before the end, in the run that parsed them.
    this.#passRead();
    if (this.#aborted) return;
    try {
      this.#o.frames.end(someTrailers(trailers) ? trailers : undefined);
    } catch (err) {
      this.#o.fail(err);
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#over = true;
    // What arrived before the failure goes on first, as it would have chunk by chunk.
    this.#passRead();
    this.#o.fail(upstreamError(error, this.#o.exchange.connection.name));
  }
}
