import type { Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { SluiceError } from '../../shared/errors.js';
import type { TunnelStream } from '../../shared/tunnel/mux-stream.js';
import { BodyFramer, FramingError } from './http-body-framer.js';
import { HeadCollector } from './http-head-collector.js';
import { HeadError, parseRequestHead, parseResponseHead, requestBodyLength, responseBodyLength, serializeRequestHead } from './http-head.js';
import { answerLocally } from './local-http-answer.js';
import { localTokenCheck, LOCAL_TOKEN_HEADERS } from './local-token.js';
import { corkEachTurn } from './socket-turn-cork.js';

/** Options of one guarded local HTTP connection. */
export interface HttpGuardOptions {
  /** The secret every request must carry. */
  token: string;
  /** Largest request (and response) head in bytes. */
  maxHeadBytes: number;
  /** Open the tunnel stream; called once, when the first request has passed the check. */
  openStream(): Promise<TunnelStream>;
  /** Answer a connection the tunnel could not take. */
  refuse(socket: Socket, err: Error): void;
}

/** Why a request was answered locally instead of forwarded. */
interface Refusal {
  error: SluiceError;
  status: number;
  headers?: Record<string, string>;
}

const MISSING_TOKEN =
  'this local port needs its local token: send "Authorization: Bearer <token>" (an OpenAI SDK sends its api key so) or "X-Api-Key: <token>". ' +
  '`sluice connect` prints the token; `sluice run` sets it in OPENAI_API_KEY and SLUICE_LOCAL_TOKEN';

/**
 * The request side: reads each request head, checks the local token, removes the headers that carry it, and
 * lets the body through untouched up to the next head. The first request that fails stops it: nothing of that
 * request or after it is forwarded, and `refused` says why.
 */
class RequestGate extends Transform {
  /** Requests forwarded so far. */
  forwarded = 0;
  /** Methods of forwarded requests whose answer has not begun, oldest first (a HEAD answer has no body). */
  readonly methods: string[] = [];
  private readonly head: HeadCollector;
  private readonly carriesToken: ReturnType<typeof localTokenCheck>;
  private body?: BodyFramer;
  private stopped = false;

  constructor(token: string, maxHeadBytes: number) {
    super();
    this.head = new HeadCollector(maxHeadBytes);
    this.carriesToken = localTokenCheck(token);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let offset = 0;
    try {
      while (offset < chunk.length && !this.stopped) {
        if (this.body) {
          const n = this.body.take(chunk, offset);
          if (n > 0) this.push(chunk.subarray(offset, offset + n));
          offset += n;
          if (this.body.done) this.body = undefined;
          continue;
        }
        const { used, head } = this.head.take(chunk, offset);
        offset += used;
        if (head) this.request(head);
      }
    } catch (err) {
      this.stop(asRefusal(err));
    }
    callback();
  }

  private request(bytes: Buffer): void {
    const head = parseRequestHead(bytes);
    if (!this.carriesToken(head.headers)) {
      this.stop({ error: new SluiceError('ERR_LOCAL_AUTH', { message: MISSING_TOKEN }), status: 401, headers: { 'www-authenticate': 'Bearer realm="sluice-local"' } });
      return;
    }
    const length = requestBodyLength(head);
    // The token never leaves this process: the gateway would not forward it, but it would record it.
    this.push(serializeRequestHead(head, LOCAL_TOKEN_HEADERS));
    this.methods.push(head.method);
    this.forwarded++;
    if (this.forwarded === 1) this.emit('first-request');
    if (length.kind !== 'none') this.body = new BodyFramer(length);
  }

  private stop(refusal: Refusal): void {
    if (this.stopped) return;
    this.stopped = true;
    this.emit('refused', refusal);
  }
}

function asRefusal(err: unknown): Refusal {
  if (err instanceof HeadError) return { error: new SluiceError('ERR_BAD_REQUEST', { message: `Malformed HTTP request: ${err.message}` }), status: err.status };
  if (err instanceof FramingError) return { error: new SluiceError('ERR_BAD_REQUEST', { message: `Malformed HTTP request: ${err.message}` }), status: 400 };
  return { error: new SluiceError('ERR_INTERNAL', { message: `Internal error: ${(err as Error)?.message ?? String(err)}`, cause: err }), status: 500 };
}

/**
 * The response side: follows the answers coming back through the tunnel (bytes untouched) to count the
 * complete ones, so a local answer to a later request is written after the answers to the requests before it.
 */
class ResponseCounter {
  /** Final answers received whole. */
  completed = 0;
  /** True once the answers could not be followed (then a local answer cannot be put in order). */
  lost = false;
  private readonly head: HeadCollector;
  private body?: BodyFramer;

  constructor(
    private readonly methods: string[],
    maxHeadBytes: number,
  ) {
    this.head = new HeadCollector(maxHeadBytes);
  }

  observe(chunk: Buffer): void {
    let offset = 0;
    try {
      while (offset < chunk.length && !this.lost) {
        if (this.body) {
          offset += this.body.take(chunk, offset);
          if (this.body.done) {
            this.body = undefined;
            this.completed++;
          }
          continue;
        }
        const { used, head } = this.head.take(chunk, offset);
        offset += used;
        if (head) this.response(head);
      }
    } catch {
      this.lost = true;
    }
  }

  private response(bytes: Buffer): void {
    const head = parseResponseHead(bytes);
    // 1xx answers (100 Continue) come before the final one; 101 would end HTTP on this connection.
    if (head.status === 101) throw new Error('protocol switch');
    if (head.status < 200) return;
    const method = this.methods.shift();
    if (method === undefined) throw new Error('an answer to no request');
    const length = responseBodyLength(head, method);
    if (length.kind === 'none') this.completed++;
    else this.body = new BodyFramer(length);
  }
}

/**
 * Serve one local connection of an http tunnel with the local token required on every request. The tunnel
 * stream is opened only once a request has passed, so a caller without the token never reaches the gateway.
 * Requests are checked in order, pipelined or not; a failing one is answered locally (401, or 400 for a head
 * that cannot be read) after the answers to the requests before it, and the connection is closed.
 */
export function serveGuardedHttp(socket: Socket, options: HttpGuardOptions): void {
  const gate = new RequestGate(options.token, options.maxHeadBytes);
  const answers = new ResponseCounter(gate.methods, options.maxHeadBytes);
  let stream: TunnelStream | undefined;
  let opening = false;
  let refusal: Refusal | undefined;
  let answered = false;

  const answerIfDue = (): void => {
    if (!refusal || answered) return;
    if (answers.completed < gate.forwarded) {
      if (answers.lost) socket.destroy();
      return;
    }
    answered = true;
    if (stream) {
      gate.unpipe(stream);
      stream.unpipe(socket);
      stream.destroy();
    }
    answerLocally(socket, refusal.error, { status: refusal.status, headers: refusal.headers });
  };

  gate.once('refused', (r: Refusal) => {
    socket.unpipe(gate);
    refusal = r;
    answerIfDue();
  });
  gate.once('first-request', () => {
    opening = true;
    options
      .openStream()
      .then((s) => {
        if (socket.destroyed || answered) {
          s.destroy();
          return;
        }
        stream = s;
        corkEachTurn(gate, s);
        gate.pipe(s);
        corkEachTurn(s, socket);
        s.pipe(socket);
        // Registered after pipe(): by the time an answer is counted, its bytes are queued on the socket.
        s.on('data', (c: Buffer) => {
          answers.observe(c);
          answerIfDue();
        });
        // A reset on either side must not look like a clean end to the other.
        s.on('error', () => {
          if (!answered && !socket.destroyed) socket.resetAndDestroy();
        });
        socket.on('close', () => {
          if (!s.destroyed && !s.writableFinished) s.destroy();
        });
        s.on('close', () => {
          if (!answered && !socket.destroyed && !socket.writableFinished) socket.destroy();
        });
      })
      .catch((err: Error) => {
        socket.unpipe(gate);
        answered = true;
        options.refuse(socket, err);
      });
  });
  socket.on('error', () => stream?.destroy());
  // A client that leaves before a request passed gets its half-closed connection closed.
  socket.once('end', () => {
    if (!opening) socket.end();
  });
  socket.pipe(gate);
}
