import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Transform, Writable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { toSluiceError } from '../../shared/errors.js';
import { BoundedBody, hasRequestBody } from './bounded-body.js';
import { openAiErrorBody, sendErrorResponse, upstreamError } from './error-response.js';
import type { Exchange } from './exchange.js';
import { callerResponseHeaders, upstreamRequestHeaders } from './forward-headers.js';
import type { MaskingStage } from './masking-stage.js';
import type { BodyTap, ExchangeEndEvent, ExchangeEnding, Recorder } from './recorder.js';
import type { UpstreamRoute } from './upstream-pools.js';
import { checkRequestPath } from './request-path.js';
import { forwardedPath } from './upstream-target.js';

/** What one upstream call needs; built by the exchange handler once the exchange may be forwarded. */
export interface UpstreamCallOptions {
  readonly exchange: Exchange;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly route: UpstreamRoute;
  readonly masking: MaskingStage;
  readonly recorder: Recorder;
  /** The whole request body, when `takeWholeBody` took it before the request was recorded. */
  readonly body?: Buffer;
  readonly maxBody: number;
  readonly proto: 'http' | 'https';
  /** Masking profiles the matching policy rule adds to the connection's. */
  readonly extraMasking?: readonly string[];
}

/** Forwards the exchange upstream and streams the response back; settles the caller's response in every case. */
export function callUpstream(options: UpstreamCallOptions): void {
  new UpstreamCall(options).start();
}

/**
 * The request body, if it has arrived whole. A small body with a Content-Length (the common chat request)
 * has usually arrived by the time the pipeline's stages have run: it is then recorded with the request and
 * sent as one Buffer, which undici writes together with the head in one syscall and without a stream.
 * Anything else streams, counted (undefined here).
 */
export function takeWholeBody(req: IncomingMessage): Buffer | undefined {
  if (!hasRequestBody(req)) return undefined;
  const declared = req.headers['content-length'];
  if (declared !== undefined && req.headers['transfer-encoding'] === undefined && req.readableLength === Number(declared)) {
    const whole = req.read(req.readableLength) as Buffer | null;
    if (whole !== null) {
      // Let the (now empty) request reach its end so the next request on the connection is read.
      req.resume();
      return whole;
    }
  }
  return undefined;
}

/**
 * One request through undici's low-level `dispatch`: the response body goes from the upstream socket
 * straight to the caller's response with no intermediate stream, and the upstream is paused whenever
 * the caller's side is full (`write()` returned false) until it drains.
 */
class UpstreamCall implements Dispatcher.DispatchHandler {
  readonly #o: UpstreamCallOptions;
  readonly #body: BoundedBody | Buffer | null;
  #controller: Dispatcher.DispatchController | null = null;
  /** The recorder's view of the bytes; null when it wants none. */
  readonly #tap: BodyTap | null;
  #sink: Writable | null = null;
  #transform: Transform | null = null;
  #status = 0;
  #responseBytes = 0;
  /** The upstream's Content-Length when the caller gets it too; -1 otherwise. */
  #declaredLength = -1;
  /** Body chunks that arrived before the head reached the caller (undici should hold them; never drop them). */
  #early: Buffer[] | null = null;
  /** The last chunk of a sized body, held so the caller's response completes only after the end is recorded. */
  #lastChunk: Buffer | undefined = undefined;
  /** The upstream ended before the head reached the caller (bodiless responses). */
  #endPending = false;
  /** Set once the caller's response is settled (ended, answered with an error, or aborted). */
  #settled = false;

  readonly #onDrain = (): void => {
    this.#controller?.resume();
  };
  readonly #onCallerClose = (): void => {
    if (this.#settled || this.#o.res.writableFinished) return;
    this.#settled = true;
    this.#controller?.abort(new Error('The caller closed the connection'));
    this.#transform?.destroy();
    this.#o.recorder.emit(this.#endEvent(false)).catch(() => undefined);
  };

  constructor(options: UpstreamCallOptions) {
    this.#o = options;
    const { req } = options;
    // A chunk that cannot be recorded stops the exchange at once, in both directions.
    this.#tap = options.recorder.tap?.(options.exchange, (err) => this.#fail(err)) ?? null;
    if (options.body !== undefined) {
      this.#body = options.body;
    } else if (hasRequestBody(req)) {
      // Each chunk goes upstream once the recording holds it.
      const tap = this.#tap;
      this.#body = new BoundedBody(req, options.maxBody, tap === null ? undefined : (chunk) => tap.upRecorded(chunk));
    } else {
      this.#body = null;
    }
  }

  start(): void {
    const { exchange, req, res, route, proto } = this.#o;
    let path: string;
    try {
      // Whatever handed the pipeline its path, the upstream gets only a normalised one under its base path.
      checkRequestPath(exchange.path);
      path = forwardedPath(route.target, exchange.path);
    } catch (err) {
      this.#fail(err);
      return;
    }
    res.on('close', this.#onCallerClose);
    const timeout = route.target.responseTimeoutMs;
    route.pool.dispatch(
      {
        origin: route.target.origin,
        path,
        method: exchange.method as Dispatcher.HttpMethod,
        headers: upstreamRequestHeaders(req.headers, route.target, {
          requestId: exchange.id,
          clientAddress: exchange.clientAddress,
          proto,
        }),
        body: this.#body,
        headersTimeout: timeout,
        // Between two body chunks: a model that goes silent mid-stream for this long is treated as gone.
        bodyTimeout: timeout,
      },
      this,
    );
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#settled) controller.abort(new Error('The caller closed the connection'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, upstreamHeaders: IncomingHttpHeaders): void {
    // Informational answers (100 Continue to undici's own request) are not the response.
    if (status < 200 || this.#settled) return;
    this.#status = status;
    // Masked before anything records or forwards them: the recording holds what the caller may see.
    let headers: IncomingHttpHeaders;
    try {
      headers = this.#o.masking.responseHeaders?.(this.#o.exchange, upstreamHeaders, this.#o.extraMasking) ?? upstreamHeaders;
    } catch (err) {
      this.#fail(err);
      return;
    }
    // The head's record is queued ahead of the body's and need not be on disk before the caller sees the
    // head: the end is, and a failed write of anything before it aborts the response instead of ending it.
    this.#o.recorder.emit({ type: 'exchange.response', exchange: this.#o.exchange, status, headers }).catch((err: unknown) => this.#fail(err));
    this.#writeHead(controller, status, headers);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#sink === null) {
      (this.#early ??= []).push(chunk);
      controller.pause();
      return;
    }
    this.#responseBytes += chunk.length;
    // With a masking transform the tap sees its output instead: what the caller receives.
    if (this.#transform === null) this.#tap?.down(chunk);
    if (this.#responseBytes === this.#declaredLength) {
      // With a Content-Length, the last byte is the end as far as the caller can tell.
      this.#lastChunk = chunk;
      return;
    }
    if (!this.#sink.write(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    if (this.#sink === null) {
      this.#endPending = true;
    } else if (this.#transform !== null) {
      this.#transform.end();
    } else {
      this.#finish();
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#fail(upstreamError(error, this.#o.exchange.connection.name));
  }

  #writeHead(controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    if (this.#settled) return;
    const { exchange, res, masking } = this.#o;
    try {
      let transform: Transform | null;
      let callerHeaders = headers;
      let credentialsOnly = false;
      if (masking.responsePlan !== undefined) {
        const plan = masking.responsePlan(exchange, { status, headers }, this.#o.extraMasking);
        transform = plan?.transform ?? null;
        credentialsOnly = plan?.credentialsOnly === true;
        if (plan) callerHeaders = plan.headers(headers);
      } else {
        transform = masking.responseTransform(exchange, { status, headers }, this.#o.extraMasking);
      }
      res.writeHead(status, callerResponseHeaders(callerHeaders, exchange.id, transform === null));
      // A streamed body (SSE, chunked) must reach the caller's SDK at once; a sized one carries the head
      // in its first write, one packet fewer.
      if (transform !== null || headers['content-length'] === undefined) res.flushHeaders();
      if (transform === null) {
        this.#sink = res;
        const length = headers['content-length'];
        if (length !== undefined && exchange.method !== 'HEAD') this.#declaredLength = Number(length);
      } else {
        this.#transform = transform;
        // A search for injected credentials only does not make the body masked content worth keeping.
        if (!credentialsOnly) this.#tap?.downMasked?.();
        this.#sink = transform;
        this.#pipeTransform(transform);
      }
      this.#sink.on('drain', this.#onDrain);
      if (this.#early !== null) {
        for (const chunk of this.#early) this.onResponseData(controller, chunk);
        this.#early = null;
      }
    } catch (err) {
      this.#fail(err);
      return;
    }
    if (this.#endPending) this.onResponseEnd();
    // A full sink resumes the upstream from its 'drain' handler instead.
    else if (this.#sink?.writableNeedDrain !== true) controller.resume();
  }

  /** Masked output goes to the caller with the same backpressure; its end is the response's end. */
  #pipeTransform(transform: Transform): void {
    const { res } = this.#o;
    transform.on('data', (chunk: Buffer) => {
      this.#tap?.down(chunk);
      if (!res.write(chunk)) transform.pause();
    });
    res.on('drain', () => transform.resume());
    transform.on('end', () => this.#finish());
    transform.on('error', (err) => this.#fail(err));
  }

  #finish(): void {
    if (this.#settled) return;
    this.#o.recorder.emit(this.#endEvent(true)).then(
      () => {
        if (this.#settled) return;
        this.#settled = true;
        this.#o.res.end(this.#lastChunk);
      },
      (err: unknown) => this.#fail(err),
    );
  }

  #fail(error: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    const { exchange, res, recorder } = this.#o;
    const err = toSluiceError(error);
    this.#controller?.abort(err);
    if (this.#body instanceof BoundedBody) this.#body.destroy();
    this.#transform?.destroy();
    // The end says what the caller got: this error in full, or the upstream's status cut off mid-answer.
    const answered = !res.headersSent && !res.destroyed;
    const end: ExchangeEnding = answered
      ? { ...this.#ending(true), status: err.status, responseBytes: Buffer.byteLength(openAiErrorBody(err, exchange.id)) }
      : { ...this.#ending(false), status: res.headersSent ? this.#status : 0 };
    // Recorded before it is answered, like a refusal in the pipeline; answered even when it cannot be recorded.
    recorder
      .emit({ type: 'exchange.error', exchange, code: err.code, message: err.message, afterResponseHead: res.headersSent, end })
      .catch(() => undefined)
      .then(() => sendErrorResponse(res, err, exchange.id));
  }

  #ending(complete: boolean): ExchangeEnding {
    return {
      status: this.#status,
      complete,
      requestBytes: this.#body === null ? 0 : Buffer.isBuffer(this.#body) ? this.#body.length : this.#body.bytes,
      responseBytes: this.#responseBytes,
      durationMs: Date.now() - this.#o.exchange.startedAt,
    };
  }

  #endEvent(complete: boolean): ExchangeEndEvent {
    return { type: 'exchange.end', exchange: this.#o.exchange, ...this.#ending(complete) };
  }
}
