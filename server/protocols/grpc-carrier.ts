import { constants as http2Constants, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { Readable } from 'node:stream';
import { gunzipSync, inflateSync } from 'node:zlib';
import { SluiceError } from '../../shared/errors.js';
import { decodeContentEncoding } from '../codec/content-decoding.js';
import type { GrpcConnectionConfig } from '../config/schema.js';
import type { ChunkGate } from '../pipeline/bounded-body.js';
import type { Carrier } from '../pipeline/carrier.js';
import { startExchange, type ExchangeVia, type SessionRef } from '../pipeline/exchange.js';
import type { RecordingFacts } from '../pipeline/recorder.js';
import type { ResponseHead } from '../pipeline/response-frames.js';
import type { ExchangeHandler } from '../pipeline/run-exchange.js';
import type { Principal } from '../identity/principal.js';
import type { ReadAheadBody } from '../policy/body-read-ahead.js';
import type { GrpcDescriptorCache, GrpcMethod } from './grpc/grpc-descriptors.js';
import { frameParts, GrpcFrameSplitter } from './grpc/grpc-framing.js';
import { messageJson } from './grpc/grpc-message-json.js';
import { callerMetadata, callerTrailingMetadata, splitCallPath, withoutPseudoHeaders } from './grpc/grpc-metadata.js';
import { encodeGrpcMessage, GRPC_STATUS, refusalTrailers } from './grpc/grpc-status.js';
import { startTunnelExchange } from './tunnel-exchange.js';

/** How the recorder keeps gRPC calls: one `grpc.message` record per message, decoded per call with its method. */
export const GRPC_RECORDING: RecordingFacts = Object.freeze({ body: 'messages', chunkRecord: 'grpc.message' });

/** What the tunnel's gRPC protocol established about one call. */
export interface GrpcCallContext {
  /** Authenticated by the tunnel. */
  readonly principal: Principal;
  readonly connection: GrpcConnectionConfig;
  readonly session: SessionRef;
  readonly clientAddress: string;
  readonly descriptors: GrpcDescriptorCache;
  /** How the caller reached the gateway: a tunnel stream (the default) or the gateway's own gRPC listener (`grpc_listen`). */
  readonly via?: ExchangeVia;
}

/** What is sent when an upstream ended a call without a status, which a gRPC client would otherwise wait for. */
const MISSING_STATUS = { 'grpc-status': String(GRPC_STATUS.INTERNAL), 'grpc-message': encodeGrpcMessage('The upstream ended the call without a status') };

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

/** Why a request cannot be a gRPC call at all; refused (and recorded) by the pipeline. */
function callRefusal(headers: IncomingHttpHeaders, path: string): SluiceError | undefined {
  if (headers[':method'] !== 'POST') return new SluiceError('ERR_BAD_REQUEST', { message: `A gRPC call is a POST, not ${headers[':method'] ?? 'no method'}` });
  const type = headers['content-type'] ?? '';
  if (!/^application\/grpc(\+proto)?(;|$)/.test(type)) {
    return new SluiceError('ERR_BAD_REQUEST', { message: `A gRPC call has content type application/grpc (or application/grpc+proto), not "${type}"` });
  }
  if (splitCallPath(path) === undefined) return new SluiceError('ERR_PATH_REFUSED', { message: `"${path}" is not the path of a gRPC method (/package.Service/Method)` });
  return undefined;
}

/**
 * Why a call of a method the descriptors do not define is refused, if it is: its messages could be neither
 * masked nor judged, so a connection that masks refuses it unless `unknown_methods: pass` says otherwise.
 */
function unknownMethodRefusal(connection: GrpcConnectionConfig, path: string): SluiceError | undefined {
  const mode = connection.unknown_methods ?? (connection.masking.length > 0 ? 'refuse' : 'pass');
  if (mode === 'pass') return undefined;
  return new SluiceError('ERR_GRPC_METHOD_UNKNOWN', {
    message: `"${path}" is not a method of the descriptors of connection "${connection.name}", which refuses unknown methods`,
    details: { connection: connection.name },
  });
}

/** The codings gRPC messages are compressed with that the record decodes (`grpc-encoding`). */
const MESSAGE_CODINGS: Readonly<Record<string, (bytes: Buffer, options: { maxOutputLength: number }) => Buffer>> = { gzip: gunzipSync, deflate: inflateSync };

/**
 * How one call's messages read in its record: JSON where the descriptors define the method, a compressed
 * message decompressed first (within `max_message`) with its direction's `grpc-encoding`; the payload stays as sent.
 */
function messageDecoder(method: GrpcMethod | undefined, maxMessage: number, encodingOf: (dir: 'up' | 'down') => string | undefined): NonNullable<RecordingFacts['decodeMessage']> {
  return (dir, frame, withJson) => {
    const { payload, compressed } = frameParts(frame);
    if (!withJson || method === undefined) return { payload, compressed };
    try {
      let bytes = payload;
      if (compressed) {
        const decode = MESSAGE_CODINGS[encodingOf(dir) ?? ''];
        if (decode === undefined) return { payload, compressed };
        bytes = decode(payload, { maxOutputLength: maxMessage });
      }
      return { payload, compressed, json: messageJson(dir === 'up' ? method.requestType : method.responseType, bytes) };
    } catch {
      return { payload, compressed };
    }
  };
}

/** Runs one gRPC call of a tunnel stream through the pipeline. */
export function runGrpcExchange(handler: ExchangeHandler, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, ctx: GrpcCallContext): void {
  const path = headers[':path'] ?? '';
  let refusal = callRefusal(headers, path);
  let method: GrpcMethod | undefined;
  if (refusal === undefined) {
    try {
      method = ctx.descriptors.forConnection(ctx.connection).method(path);
    } catch (err) {
      // Descriptors that cannot be loaded refuse every call of the connection, each on the record.
      refusal = err as SluiceError;
    }
    if (refusal === undefined && method === undefined) refusal = unknownMethodRefusal(ctx.connection, path);
  }
  let carrier: GrpcCarrier | undefined;
  const requestEncoding = headerValue(headers['grpc-encoding']);
  const encodingOf = (dir: 'up' | 'down'): string | undefined => (dir === 'up' ? requestEncoding : carrier?.responseEncoding);
  const facts: RecordingFacts = { ...GRPC_RECORDING, decodeMessage: messageDecoder(method, ctx.connection.max_message, encodingOf) };
  const request = { method: 'POST', path, headers: withoutPseudoHeaders(headers) };
  const exchange =
    ctx.via === 'proxy'
      ? startExchange({ principal: ctx.principal, connection: ctx.connection, session: ctx.session, clientAddress: ctx.clientAddress, via: 'proxy', ...request }, facts)
      : startTunnelExchange(ctx, request, facts);
  carrier = new GrpcCarrier(stream, { connection: ctx.connection, requestId: exchange.id, method, targetRefusal: refusal, encoding: headers['grpc-encoding'] });
  handler.runExchange(exchange, carrier);
}

/**
 * The request's messages as the upstream reads them, each let through once its gate (the recording) has
 * passed it: no message reaches the upstream unrecorded. Pulls whole frames from the splitter, so
 * backpressure reaches the caller through HTTP/2 flow control.
 */
class GatedFrames extends Readable {
  bytes = 0;
  readonly #source: GrpcFrameSplitter;
  readonly #gate: ChunkGate | undefined;
  /** Most messages the method takes: 1 for a unary request, where policy judged the one there is. */
  readonly #maxMessages: number;
  #messages = 0;
  #gating = false;
  #wanted = false;

  constructor(source: GrpcFrameSplitter, gate: ChunkGate | undefined, maxMessages: number, failed: Error | undefined) {
    super({ highWaterMark: 64 * 1024 });
    this.#source = source;
    this.#gate = gate;
    this.#maxMessages = maxMessages;
    if (failed !== undefined) {
      // The request already failed before anyone read it: the call ends with that error, not a wait.
      process.nextTick(() => this.destroy(failed));
      return;
    }
    source.on('readable', () => this.#pull());
    source.on('end', () => {
      if (!this.#gating) this.push(null);
    });
    source.on('error', (err) => this.destroy(err));
  }

  override _read(): void {
    this.#wanted = true;
    this.#pull();
  }

  #pull(): void {
    while (this.#wanted && !this.#gating && !this.destroyed) {
      const frame = this.#source.read() as Buffer | null;
      if (frame === null) {
        if (this.#source.readableEnded) this.push(null);
        return;
      }
      this.bytes += frame.length;
      if (++this.#messages > this.#maxMessages) {
        // Policy judged the one message a unary method takes; a second would reach the upstream unjudged.
        this.destroy(new SluiceError('ERR_BAD_REQUEST', { message: `A unary gRPC method takes exactly one request message; the caller sent a second` }));
        return;
      }
      if (this.#gate === undefined) {
        this.#wanted = this.push(frame);
        continue;
      }
      this.#gating = true;
      this.#gate(frame).then(
        () => {
          this.#gating = false;
          if (this.destroyed) return;
          this.#wanted = this.push(frame);
          if (this.#source.readableEnded && this.#source.readableLength === 0) this.push(null);
          else this.#pull();
        },
        (err: unknown) => {
          this.#gating = false;
          this.destroy(err as Error);
        },
      );
    }
  }
}

/**
 * One gRPC call (an HTTP/2 stream of the gateway's server on a tunnel stream) as the pipeline's carrier.
 * The request's first message is what policy judges (`request.json`); the response goes back as frames
 * with its trailers; a refusal, before or after the response head, is a gRPC status in trailers.
 */
export class GrpcCarrier implements Carrier {
  readonly secure = false;
  readonly targetRefusal: SluiceError | undefined;
  readonly #stream: ServerHttp2Stream;
  readonly #requestId: string;
  readonly #method: GrpcMethod | undefined;
  readonly #encoding: string | string[] | undefined;
  readonly #splitter: GrpcFrameSplitter;
  #firstFrame: Buffer | undefined;
  /** Why the request stream failed (a malformed or oversized message) before a reader was attached. */
  #requestError: Error | undefined;
  #readAhead: Promise<ReadAheadBody> | undefined;
  /** How the response's compressed messages are compressed (its head's `grpc-encoding`), once the head came. */
  responseEncoding: string | undefined;
  /** The trailers that end the response, once its end (or a refusal) set them. */
  #trailers: OutgoingHttpHeaders | undefined;
  #ending = false;

  constructor(
    stream: ServerHttp2Stream,
    o: {
      readonly connection: GrpcConnectionConfig;
      readonly requestId: string;
      readonly method: GrpcMethod | undefined;
      readonly targetRefusal: SluiceError | undefined;
      readonly encoding: string | string[] | undefined;
    },
  ) {
    this.#stream = stream;
    this.#requestId = o.requestId;
    this.#method = o.method;
    this.#encoding = o.encoding;
    this.targetRefusal = o.targetRefusal;
    this.#splitter = new GrpcFrameSplitter(o.connection.max_message, 'request');
    // Failures of the request stream reach the pipeline through `readAhead` or `requestBody`; until then they wait here.
    this.#splitter.on('error', (err) => (this.#requestError ??= err));
    stream.pipe(this.#splitter);
    stream.once('wantTrailers', () => stream.sendTrailers(this.#trailers ?? MISSING_STATUS));
  }

  get gone(): boolean {
    return this.#stream.destroyed;
  }

  get headSent(): boolean {
    return this.#stream.headersSent;
  }

  readAhead(limit: number): Promise<ReadAheadBody> {
    return (this.#readAhead ??= this.#judgeFirstMessage(limit));
  }

  takeBody(): undefined {
    // Messages always stream, each recorded before it goes upstream.
    return undefined;
  }

  takeArrivedBody(): { readonly body?: Buffer; readonly unread: boolean } {
    // The first message, when policy read it, is what a refused call asked.
    return this.#firstFrame === undefined ? { unread: false } : { body: this.#firstFrame, unread: false };
  }

  requestBody(gate: ChunkGate | undefined): Readable {
    // A method the descriptors do not define is not bounded here: policy that reads its body refuses it.
    const maxMessages = this.#method?.requestStream === false ? 1 : Infinity;
    return new GatedFrames(this.#splitter, gate, maxMessages, this.#requestError);
  }

  onGone(listener: (error?: Error) => void): () => void {
    // Also emitted once the call has ended: by then the pipeline has settled the exchange and ignores it.
    const onClose = (): void => listener();
    this.#stream.once('close', onClose);
    return () => this.#stream.off('close', onClose);
  }

  answer(): void {
    // Never asked: a held gRPC call is bound to no body (no `peekBody`), so it is never answered at once
    // (Prefer: respond-async) but waits for its review; should it be asked, the call fails rather than hang.
    this.refuse(new SluiceError('ERR_INTERNAL', { message: 'A gRPC call cannot be answered by the gateway' }), this.#requestId);
  }

  refusal(error: SluiceError, requestId: string): { readonly status: number; readonly bytes: number; readonly trailers: IncomingHttpHeaders } | null {
    if (this.#stream.destroyed || this.#ending) return null;
    // Before a head the refusal is a trailers-only answer, an HTTP 200 like any gRPC response; after one, trailers.
    return { status: 200, bytes: 0, trailers: refusalTrailers(error, requestId) };
  }

  refuse(error: SluiceError, requestId: string): void {
    const stream = this.#stream;
    if (stream.destroyed) return;
    // What the caller still sends is not read: its flow-control window stays closed, and the stream ends below.
    stream.unpipe(this.#splitter);
    this.#splitter.destroy();
    if (this.#ending) {
      // The response's end was already on its way: all that can still be said is that the call broke.
      stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    this.#ending = true;
    const trailers = refusalTrailers(error, requestId);
    if (!stream.headersSent) {
      // Trailers-only: the status is the whole answer (gRPC over HTTP/2, "Responses").
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
      return;
    }
    this.#trailers = trailers;
    stream.end();
  }

  head(head: ResponseHead): void {
    this.responseEncoding = headerValue(head.headers['grpc-encoding']);
    this.#stream.respond({ ':status': head.status, ...callerMetadata(head.headers), 'x-request-id': this.#requestId }, { waitForTrailers: true });
  }

  data(chunk: Buffer): boolean {
    return this.#stream.write(chunk);
  }

  end(trailers?: IncomingHttpHeaders, last?: Buffer): void {
    if (this.#ending) return;
    this.#ending = true;
    if (trailers !== undefined) this.#trailers = callerTrailingMetadata(trailers);
    if (last === undefined) this.#stream.end();
    else this.#stream.end(last);
  }

  resumeWith(resume: () => void): void {
    this.#stream.on('drain', resume);
  }

  /**
   * Reads the first request message for policy and puts it back: it still goes upstream, as sent. Only a
   * unary request is one message; a client-streaming call whose policy reads the body is refused (as
   * unreadable) rather than judged by its first message while the rest go by unjudged.
   */
  async #judgeFirstMessage(limit: number): Promise<ReadAheadBody> {
    if (this.#method?.requestStream === true) {
      return { json: null, size: 0, problem: { kind: 'unreadable', reason: 'it is a client-streaming call, and policy that reads the body judges only single-message requests' } };
    }
    const frame = await this.#peekFirstFrame();
    if (frame === null) return { json: null, size: 0 };
    this.#firstFrame = frame;
    const parts = frameParts(frame);
    const size = parts.payload.length;
    if (size > limit) return { json: null, size, problem: { kind: 'too-large', reason: `it is larger than the ${limit} bytes policy reads ahead` } };
    if (this.#method === undefined) {
      return { json: null, size, problem: { kind: 'unreadable', reason: "its method is not in the connection's descriptors" } };
    }
    let payload = parts.payload;
    if (parts.compressed) {
      const encoding = Array.isArray(this.#encoding) ? this.#encoding.join(',') : this.#encoding;
      const decoded = await decodeContentEncoding(payload, encoding, { maxOutput: limit });
      if ('tooLarge' in decoded) return { json: null, size, problem: { kind: 'too-large', reason: `decompressed, it is larger than the ${limit} bytes policy reads ahead` } };
      if ('error' in decoded) return { json: null, size, problem: { kind: 'unreadable', reason: decoded.error } };
      payload = decoded.bytes;
    }
    try {
      return { json: messageJson(this.#method.requestType, payload), size };
    } catch (err) {
      return { json: null, size, problem: { kind: 'unreadable', reason: `it is not a ${this.#method.requestType.fullName.slice(1)} message (${(err as Error).message})` } };
    }
  }

  /** The first whole request frame, left at the head of the request; null when the request ended without one. */
  #peekFirstFrame(): Promise<Buffer | null> {
    const splitter = this.#splitter;
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        splitter.off('readable', tryRead);
        splitter.off('end', onEnd);
        splitter.off('error', reject);
      };
      const tryRead = (): void => {
        const frame = splitter.read() as Buffer | null;
        if (frame === null) return;
        cleanup();
        splitter.unshift(frame);
        resolve(frame);
      };
      const onEnd = (): void => {
        cleanup();
        resolve(null);
      };
      if (this.#requestError !== undefined) {
        reject(this.#requestError);
        return;
      }
      if (splitter.readableEnded) {
        resolve(null);
        return;
      }
      splitter.on('readable', tryRead);
      splitter.once('end', onEnd);
      splitter.once('error', reject);
      tryRead();
    });
  }
}
