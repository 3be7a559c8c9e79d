import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { toSluiceError, type SluiceError } from '../../shared/errors.js';
import type { HttpConnectionConfig } from '../config/schema.js';
import type { ReadAheadBody } from '../policy/body-read-ahead.js';
import { readBodyForPolicy } from '../policy/body-read-ahead.js';
import { BoundedBody, hasRequestBody, type ChunkGate } from '../pipeline/bounded-body.js';
import type { Carrier } from '../pipeline/carrier.js';
import { openAiErrorBody, sendErrorResponse } from '../pipeline/error-response.js';
import { startExchange, type SessionRef, type ExchangeVia } from '../pipeline/exchange.js';
import { callerResponseHeaders, callerTrailers } from '../pipeline/forward-headers.js';
import type { RecordingFacts } from '../pipeline/recorder.js';
import { requestPathFor } from '../pipeline/request-path.js';
import type { ResponseHead } from '../pipeline/response-frames.js';
import type { ExchangeHandler } from '../pipeline/run-exchange.js';
import type { Principal } from '../identity/principal.js';
import { arrivedBody, peekArrivedBody, takeWholeBody } from './http-request-body.js';

/**
 * Most bytes of a rewritten answer held back so it leaves whole. An answer the upstream sized (Content-Length)
 * that masking rewrites loses its length and would go out chunked, in a write for its head, its body and its
 * last chunk each; held to its end, it leaves in one write with its new length, as the upstream sent it (a
 * sized answer is of no use to its caller before its last byte anyway). Past this bound the head and what was
 * held go out and the rest streams chunked, so a large or decompressed body is never buffered whole.
 */
export const WHOLE_ANSWER_MAX_BYTES = 64 * 1024;

/** How the recorder keeps HTTP exchanges: message bodies, `exchange.chunk` records. */
export const HTTP_RECORDING: RecordingFacts = Object.freeze({ body: 'message', chunkRecord: 'exchange.chunk' });

/** What the caller of the pipeline (the tunnel's HTTP protocol or the proxy route) established about one request. */
export interface HttpExchangeContext {
  /** Already authenticated: tunnel auth or the proxy route's bearer token. */
  readonly principal: Principal;
  readonly connection: HttpConnectionConfig;
  readonly session: SessionRef;
  /** The caller's address as the gateway saw it; becomes X-Forwarded-For. */
  readonly clientAddress: string;
  readonly via: ExchangeVia;
  /**
   * The request target relative to the connection's upstream, as the caller sent it: put in normal form
   * under the connection's path hygiene here, and refused (and recorded) by the pipeline when it cannot be.
   */
  readonly path: string;
  /** True when the client sent `Expect: 100-continue` and no 100 has been written yet. */
  readonly awaitingContinue?: boolean;
}

/** Runs one HTTP/1.1 request through the pipeline: the one entry of the tunnel's HTTP protocol and the proxy route. */
export function runHttpExchange(handler: ExchangeHandler, req: IncomingMessage, res: ServerResponse, ctx: HttpExchangeContext): void {
  // The one path policy judges, the recording keeps and the upstream receives. A target that cannot be
  // normalised keeps its raw form here, for the record of its refusal; it never goes further.
  let path = ctx.path;
  let targetRefusal: SluiceError | undefined;
  try {
    path = requestPathFor(ctx.path, ctx.connection);
  } catch (err) {
    targetRefusal = toSluiceError(err);
  }
  const exchange = startExchange(
    { principal: ctx.principal, connection: ctx.connection, session: ctx.session, clientAddress: ctx.clientAddress, via: ctx.via, method: req.method ?? 'GET', path, headers: req.headers },
    HTTP_RECORDING,
  );
  handler.runExchange(exchange, new HttpCarrier(req, res, { connection: ctx.connection, requestId: exchange.id, awaitingContinue: ctx.awaitingContinue === true, targetRefusal }));
}

/** An HTTP/1.1 request and its response (Node's parser and ServerResponse) as the pipeline's carrier. */
export class HttpCarrier implements Carrier {
  readonly targetRefusal: SluiceError | undefined;
  readonly secure: boolean;
  readonly bodyLimit: number;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #requestId: string;
  #awaitingContinue: boolean;
  #readAhead: Promise<ReadAheadBody> | undefined;
  /** A sized answer being rewritten, held until its end (see `WHOLE_ANSWER_MAX_BYTES`); null when none is held. */
  #whole: { readonly status: number; readonly headers: string[]; readonly chunks: Buffer[]; bytes: number } | null = null;
  /** A body chunk or the end has been written to the response, taking a head not yet sent along. */
  #bodyWritten = false;

  constructor(
    req: IncomingMessage,
    res: ServerResponse,
    o: { readonly connection: HttpConnectionConfig; readonly requestId: string; readonly awaitingContinue: boolean; readonly targetRefusal: SluiceError | undefined },
  ) {
    this.#req = req;
    this.#res = res;
    this.#requestId = o.requestId;
    this.#awaitingContinue = o.awaitingContinue;
    this.targetRefusal = o.targetRefusal;
    this.bodyLimit = o.connection.max_body;
    this.secure = (req.socket as Partial<TLSSocket>).encrypted === true;
  }

  get gone(): boolean {
    return this.#res.destroyed;
  }

  get headSent(): boolean {
    // A held answer counts as begun: its head is recorded, and a failure now cuts it off as it would a sent one.
    return this.#whole !== null || this.#res.headersSent;
  }

  get bodyHeld(): boolean {
    return this.#awaitingContinue;
  }

  readAhead(limit: number): Promise<ReadAheadBody> {
    // The body must arrive before it can be seen, so a caller waiting for 100 Continue is told to send it now.
    if (this.#awaitingContinue && hasRequestBody(this.#req)) this.#continue();
    return (this.#readAhead ??= readBodyForPolicy(this.#req, { limit }));
  }

  peekBody(): Buffer | undefined {
    return peekArrivedBody(this.#req);
  }

  takeBody(): Buffer | undefined {
    return takeWholeBody(this.#req);
  }

  takeArrivedBody(): { readonly body?: Buffer; readonly unread: boolean } {
    const body = arrivedBody(this.#req);
    return body === undefined ? { unread: hasRequestBody(this.#req) } : { body, unread: false };
  }

  requestBody(gate: ChunkGate | undefined): Readable | null {
    // The caller held its body until told to send it, so refused requests never upload anything.
    if (this.#awaitingContinue) this.#continue();
    return hasRequestBody(this.#req) ? new BoundedBody(this.#req, this.bodyLimit, gate) : null;
  }

  onGone(listener: (error?: Error) => void): () => void {
    // Also emitted once a response has finished: by then the pipeline has settled the exchange and ignores it.
    const onClose = (): void => listener();
    this.#res.once('close', onClose);
    return () => this.#res.off('close', onClose);
  }

  answer(status: number, headers: OutgoingHttpHeaders, body: Buffer): void {
    this.#res.writeHead(status, headers);
    this.#res.end(body);
  }

  refusal(error: SluiceError, requestId: string): { readonly status: number; readonly bytes: number } | null {
    if (this.headSent || this.#res.destroyed) return null;
    return { status: error.status, bytes: Buffer.byteLength(openAiErrorBody(error, requestId)) };
  }

  refuse(error: SluiceError, requestId: string): void {
    if (this.#whole !== null) {
      // What was held is never sent: the caller sees the answer cut off, as it would once its head had gone.
      this.#whole = null;
      this.#res.destroy();
      return;
    }
    sendErrorResponse(this.#res, error, requestId);
  }

  head(head: ResponseHead): void {
    const res = this.#res;
    const headers = callerResponseHeaders(head.headers, this.#requestId, head.rewrite !== undefined);
    const sized = head.headers['content-length'] !== undefined;
    if (head.rewrite !== undefined && sized && this.#req.method !== 'HEAD' && head.status !== 204 && head.status !== 304) {
      this.#whole = { status: head.status, headers, chunks: [], bytes: 0 };
      return;
    }
    res.writeHead(head.status, headers);
    // A streamed body (SSE, chunked, masked) must reach the caller's SDK without waiting for its first byte,
    // which may be seconds away (a model thinking); a sized one carries the head in its first write, one
    // packet fewer. A streamed head waits for the end of the turn: the body's first chunk, usually parsed
    // from the same upstream read, takes it along in one write (one system call and one wake-up of the
    // caller fewer), and when no chunk came the head goes alone, as the tunnel's frames do (mux.ts).
    if (head.rewrite !== undefined || !sized) setImmediate(() => this.#flushLoneHead());
  }

  /** Sends the head of a streamed answer when no body chunk or end has taken it along during its turn. */
  #flushLoneHead(): void {
    const res = this.#res;
    if (!this.#bodyWritten && !res.destroyed) res.flushHeaders();
  }

  data(chunk: Buffer): boolean {
    const whole = this.#whole;
    if (whole === null) {
      this.#bodyWritten = true;
      return this.#res.write(chunk);
    }
    whole.chunks.push(chunk);
    whole.bytes += chunk.length;
    return whole.bytes <= WHOLE_ANSWER_MAX_BYTES || this.#sendHeld();
  }

  end(trailers?: IncomingHttpHeaders, last?: Buffer): void {
    this.#bodyWritten = true;
    const whole = this.#whole;
    // Trailers need the chunked framing: an answer that brings them goes out as it would have unheld.
    if (whole !== null && trailers === undefined) {
      this.#whole = null;
      if (last !== undefined) whole.chunks.push(last);
      const body = whole.chunks.length === 1 ? whole.chunks[0]! : Buffer.concat(whole.chunks);
      whole.headers.push('content-length', String(body.length));
      this.#res.writeHead(whole.status, whole.headers);
      this.#res.end(body);
      return;
    }
    if (whole !== null) this.#sendHeld();
    // Sent only on a chunked response (Node drops them otherwise), which is how an upstream sends them too.
    if (trailers !== undefined) this.#res.addTrailers(callerTrailers(trailers));
    if (last === undefined) this.#res.end();
    else this.#res.end(last);
  }

  /** Sends the held head and body, chunked; the rest of the answer follows as it comes. */
  #sendHeld(): boolean {
    const whole = this.#whole!;
    this.#whole = null;
    const res = this.#res;
    res.writeHead(whole.status, whole.headers);
    if (whole.chunks.length === 0) {
      res.flushHeaders();
      return true;
    }
    return res.write(whole.chunks.length === 1 ? whole.chunks[0]! : Buffer.concat(whole.chunks));
  }

  resumeWith(resume: () => void): void {
    this.#res.on('drain', resume);
  }

  #continue(): void {
    this.#awaitingContinue = false;
    this.#res.writeContinue();
  }
}
