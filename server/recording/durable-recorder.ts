import { createHash, hash as digestOnce, type Hash } from 'node:crypto';
import { isDenial } from '../../shared/denial-codes.js';
import { SluiceError } from '../../shared/errors.js';
import type { ExchangeFacts } from '../pipeline/exchange.js';
import type { Decision } from '../pipeline/policy-stage.js';
import type {
  BodyTap,
  ErrorRecord,
  ExchangeEnding,
  ExchangeRecording,
  Recorder,
  RecordingFacts,
  RequestRecord,
  ResponseHeadRecord,
  ReviewRecord,
  SessionRecorder,
} from '../pipeline/recorder.js';
import { ChunkCoalescer, type ChunkRun } from './chunk-coalescer.js';
import { recordableHeaders, recordableTarget } from './credential-redaction.js';
import { injectedCredentials } from '../masking/credential-masker.js';
import type { BodyDigest, Direction, EventFields } from './event-types.js';
import type { RecorderSessions } from './recorder-sessions.js';
import type { OpenSessionFile } from './open-session-file.js';
import { UsageSniffer, type AnswerFacts } from './usage-sniffer.js';

/** Options of the durable recorder. */
export interface DurableRecorderOptions {
  readonly recording: RecorderSessions;
}

/**
 * How one direction's body is kept. `masked` keeps the bytes as the caller's side of the gateway saw them:
 * masked when a masking profile applies to the exchange (a body masking could not read — binary, compressed
 * in a way it cannot undo — keeps only sizes, times and a SHA-256, never bytes that might hold what masking
 * would remove), as sent when none does. `raw` keeps the bytes; `none` keeps only the digest in
 * `exchange.end`, with no per-chunk records at all.
 */
type Capture = 'bytes' | 'shape' | 'digest';

function captureOf(setting: 'masked' | 'raw' | 'none'): Capture {
  return setting === 'raw' ? 'bytes' : setting === 'masked' ? 'shape' : 'digest';
}

/**
 * The pipeline's durable recorder: every record becomes an encrypted, chained record of the exchange's
 * session. A session's recorder finds its session once; each exchange's recording is the object the
 * exchange carries, so no record looks anything up by id.
 */
export function createDurableRecorder(options: DurableRecorderOptions): Recorder {
  return { forSession: (session) => new DurableSessionRecorder(options.recording, session.id) };
}

/** The recorder of one session: its recording, found once (a promise while the session file is created). */
class DurableSessionRecorder implements SessionRecorder {
  readonly recording: RecorderSessions;
  readonly #id: string;
  readonly #opening: Promise<OpenSessionFile> | undefined;
  #open: OpenSessionFile | undefined;
  /** The last connection's answer to `injects`: a session's exchanges share one connection. */
  #injects: { readonly connection: ExchangeFacts['connection']; readonly value: boolean } | undefined;

  constructor(recording: RecorderSessions, id: string) {
    this.recording = recording;
    this.#id = id;
    this.#opening = recording.session(id);
    this.#opening?.then(
      (session) => (this.#open = session),
      () => undefined,
    );
  }

  begin(exchange: ExchangeFacts, facts: RecordingFacts): ExchangeRecording {
    return new DurableExchangeRecording(this, exchange, facts);
  }

  /** Whether the connection injects credentials into requests (its answers are then scanned for them); read once per connection. */
  injects(connection: ExchangeFacts['connection']): boolean {
    if (this.#injects?.connection !== connection) {
      const value = 'headers' in connection && injectedCredentials(connection.headers as Record<string, string>).length > 0;
      this.#injects = { connection, value };
    }
    return this.#injects.value;
  }

  /** The open session, at once once it is open; rejects when it could not be opened. */
  session(): OpenSessionFile | Promise<OpenSessionFile> {
    if (this.#open !== undefined) return this.#open;
    if (this.#opening !== undefined) return this.#opening;
    // A session whose file could not be created is forgotten at once; the storage failure is the reason.
    const cause = this.recording.failureCause ?? 'session not open';
    throw new SluiceError('ERR_RECORDING_UNAVAILABLE', {
      message: `Session ${this.#id} has no open recording (${cause}); the exchange was refused`,
      details: { cause },
    });
  }
}

/** One exchange's bodies while they are recorded: chunk runs, digests, and what the answer says about itself. */
class BodyRecording {
  readonly session: OpenSessionFile;
  readonly #exchangeId: string;
  readonly #chunkRecord: RecordingFacts['chunkRecord'];
  /** Each chunk is one whole message (gRPC), recorded on its own rather than in runs. */
  readonly #messages: boolean;
  readonly #decodeMessage: RecordingFacts['decodeMessage'];
  readonly #messageIndex: Record<Direction, number> = { up: 0, down: 0 };
  readonly #maskedMayKeep: boolean;
  readonly #setting: Record<Direction, 'masked' | 'raw' | 'none'>;
  readonly #stream: boolean;
  readonly #why: Partial<Record<Direction, string>> = {};
  capture: Record<Direction, Capture>;
  /** Which directions' bodies the end names by their SHA-256. */
  readonly #digested: Record<Direction, boolean>;
  /** The running SHA-256 of a direction, made on its first streamed bytes. */
  readonly #hash: Partial<Record<Direction, Hash>> = {};
  /** A body that arrived whole, with the SHA-256 its request record already computed: not hashed twice. */
  readonly #whole: Partial<Record<Direction, { readonly body: Buffer; readonly sha256: string }>> = {};
  /**
   * A direction's only chunk so far, not hashed yet. Most answers come in one chunk: hashed in one call at the
   * end, they make no Hash object per exchange; a second chunk starts the running hash with this one first.
   * Kept by reference: the producers (undici, sockets, the tunnel's frames) hand over a fresh buffer per
   * chunk and never write into one they gave, as the chunk coalescer relies on too.
   */
  readonly #first: Partial<Record<Direction, Buffer>> = {};
  readonly bytes: Record<Direction, number> = { up: 0, down: 0 };
  /** Which directions' bytes the chunk runs carry; the coalescer reads it per chunk. */
  readonly #keep: Record<Direction, boolean> = { up: false, down: false };
  readonly #coalescer: ChunkCoalescer | null;
  readonly #writes = new Set<Promise<void>>();
  /** The write of the last run flushed. */
  #lastWrite: Promise<void> | undefined;
  #failure: Error | undefined;
  #onFailure: ((error: Error) => void) | undefined;
  sniffer: UsageSniffer | undefined;
  headAt: number | undefined;
  firstChunkAt: number | undefined;

  constructor(session: OpenSessionFile, exchange: ExchangeFacts, facts: RecordingFacts, unprofiled: boolean, injects: boolean) {
    this.session = session;
    this.#exchangeId = exchange.id;
    this.#chunkRecord = facts.chunkRecord;
    this.#messages = facts.body === 'messages';
    this.#decodeMessage = facts.decodeMessage;
    const { record } = exchange.connection;
    // gRPC messages are kept like an HTTP body: per `request_body` and `response_body`, digested when not kept.
    const message = facts.body !== 'stream';
    this.#maskedMayKeep = message && record.response_body === 'masked';
    // An HTTP body nothing masks is kept as sent; a response only when no credential scan rewrites it on its
    // way (that one is kept once `downMasked` says it passed the scan). gRPC messages keep their own rules.
    const asSent = facts.body === 'message' && unprofiled;
    this.capture = message
      ? {
          up: asSent && record.request_body === 'masked' ? 'bytes' : captureOf(record.request_body),
          down: asSent && !injects && record.response_body === 'masked' ? 'bytes' : captureOf(record.response_body),
        }
      : { up: record.raw ? 'bytes' : 'shape', down: record.raw ? 'bytes' : 'shape' };
    this.#setting = { up: record.request_body, down: record.response_body };
    this.#stream = !message;
    // A body `masked` keeps as sent is digested still, so the end names it whatever the profiles were.
    this.#digested = {
      up: message && (this.capture.up !== 'bytes' || record.request_body === 'masked'),
      down: message && (this.capture.down !== 'bytes' || record.response_body === 'masked'),
    };
    const wantsRuns = !this.#messages && (this.capture.up !== 'digest' || this.capture.down !== 'digest');
    this.#coalescer = wantsRuns ? new ChunkCoalescer({ keep: this.#keep, now: () => session.writer.now(), flush: (run) => this.#write(run) }) : null;
    this.#keep.up = this.capture.up === 'bytes';
    this.#keep.down = this.capture.down === 'bytes';
  }

  /** Why a direction's body is not kept when it is not, in a few words for `sessions show`, replay and exports. */
  notKept(dir: Direction): string | undefined {
    if (this.capture[dir] === 'bytes' || this.bytes[dir] === 0) return undefined;
    if (this.#stream) return 'record.raw is false: only sizes and times are kept';
    if (this.#setting[dir] === 'none') return `record.${dir === 'up' ? 'request' : 'response'}_body is none`;
    return this.#why[dir] ?? 'masking could not read it (binary or compressed): only its size and SHA-256 are kept';
  }

  /** Notes why a body that arrived is kept only as a digest. */
  because(dir: Direction, why: string): void {
    this.#why[dir] = why;
  }

  /** The response is masked before the caller (and this recording) sees it: `masked` may now keep its bytes. */
  downMasked(): void {
    if (!this.#maskedMayKeep) return;
    this.capture = { ...this.capture, down: 'bytes' };
    this.#keep.down = true;
  }

  tap(onFailure: (error: Error) => void): BodyTap {
    this.#onFailure = onFailure;
    return {
      upRecorded: (chunk) => {
        this.#chunk('up', chunk);
        if (this.capture.up === 'digest' || (this.#coalescer === null && !this.#messages)) return this.#failure === undefined ? Promise.resolve() : Promise.reject(this.#failure);
        // The run (or the message) holding this chunk is written now, alone: the chunk waits for it.
        this.#coalescer?.drain();
        return this.#lastWrite ?? Promise.resolve();
      },
      down: (chunk) => this.#chunk('down', chunk),
      downMasked: () => this.downMasked(),
    };
  }

  /**
   * A body that arrived whole and is recorded with its request: counted and digested like streamed bytes.
   * `sha256` is its digest when the caller computed it already.
   */
  wholeBody(dir: Direction, body: Buffer, sha256?: string): void {
    this.bytes[dir] += body.length;
    if (!this.#digested[dir]) return;
    if (sha256 !== undefined && this.bytes[dir] === body.length) this.#whole[dir] = { body, sha256 };
    else this.#hasher(dir).update(body);
  }

  /** The running hash of a direction; a whole body noted before goes into it first, so the digest covers every byte in order. */
  #hasher(dir: Direction): Hash {
    let hash = this.#hash[dir];
    if (hash !== undefined) return hash;
    hash = createHash('sha256');
    const whole = this.#whole[dir];
    if (whole !== undefined) {
      hash.update(whole.body);
      this.#whole[dir] = undefined;
    }
    const first = this.#first[dir];
    if (first !== undefined) {
      hash.update(first);
      this.#first[dir] = undefined;
    }
    this.#hash[dir] = hash;
    return hash;
  }

  /** Hashes a streamed chunk: the first one of a direction with nothing before it waits, whole, for the end or the next. */
  #digestChunk(dir: Direction, chunk: Buffer): void {
    if (this.#hash[dir] === undefined && this.#whole[dir] === undefined && this.#first[dir] === undefined) this.#first[dir] = chunk;
    else this.#hasher(dir).update(chunk);
  }

  /** A write of the exchange that nothing awaits on its own (the response head, an answer's runs): `settled` waits for it. */
  track(write: Promise<void>): void {
    this.#writes.add(write);
    write.then(
      () => this.#writes.delete(write),
      (err: Error) => {
        this.#writes.delete(write);
        if (this.#failure !== undefined) return;
        this.#failure = err;
        this.#onFailure?.(err);
      },
    );
  }

  #chunk(dir: Direction, chunk: Buffer): void {
    this.bytes[dir] += chunk.length;
    if (this.#digested[dir]) this.#digestChunk(dir, chunk);
    if (dir === 'down') {
      this.firstChunkAt ??= Date.now();
      this.sniffer?.push(chunk);
    }
    if (this.capture[dir] === 'digest') return;
    if (this.#messages) this.#writeMessage(dir, chunk);
    else this.#coalescer?.push(dir, chunk);
  }

  /** One message's record: its bytes and JSON when its direction is kept, its size otherwise. */
  #writeMessage(dir: Direction, frame: Buffer): void {
    const keep = this.capture[dir] === 'bytes';
    const decoded = this.#decodeMessage?.(dir, frame, keep) ?? { payload: frame, compressed: false };
    const fields: EventFields['grpc.message'] = {
      exchange: this.#exchangeId,
      dir,
      index: this.#messageIndex[dir]++,
      bytes: decoded.payload.length,
      ...(decoded.compressed ? { compressed: true } : {}),
      ...(decoded.json === undefined ? {} : { json: decoded.json }),
    };
    // An answer's messages are written with what follows them; a request's, which wait to go upstream, at once.
    const payload = keep ? decoded.payload : undefined;
    const write = dir === 'down' ? this.session.defer('grpc.message', fields, payload) : this.session.append('grpc.message', fields, payload);
    this.#lastWrite = write;
    this.track(write);
  }

  #write(run: ChunkRun): void {
    const fields: EventFields['exchange.chunk'] = { exchange: this.#exchangeId, dir: run.dir, bytes: run.bytes, ...(run.parts.length > 1 ? { parts: run.parts } : {}) };
    // Runs are only made for chunk records; messages are written one by one above. An answer's runs share the
    // record of what follows them (the next run, the end); the caller's, which wait to go upstream, are written at once.
    const type = this.#chunkRecord as 'exchange.chunk' | 'tcp.chunk';
    const write = run.dir === 'down' ? this.session.defer(type, fields, run.payload, run.t) : this.session.append(type, fields, run.payload, run.t);
    this.#lastWrite = write;
    this.track(write);
  }

  /**
   * Flushes chunk runs and waits for the writes already on their way; rejects with the first that could not
   * be written. What is still deferred is not waited for: it is written with the end, in the same write, so
   * either both are on disk or neither is.
   */
  async settle(): Promise<void> {
    this.#coalescer?.drain();
    if (this.#failure === undefined) await this.session.writer.written();
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Waits for every write of the exchange (the end's included); rejects with the first that could not be written. */
  async settled(): Promise<void> {
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes]);
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Flushes chunk runs without waiting for them (the exchange failed or the caller left). */
  drain(): void {
    this.#coalescer?.drain();
  }

  digest(dir: Direction): BodyDigest | undefined {
    if (!this.#digested[dir] || this.bytes[dir] === 0) return undefined;
    const why = this.notKept(dir);
    // A first chunk still held is the whole body: the running hash takes it over as soon as one is made.
    const first = this.#first[dir];
    const sha256 = this.#whole[dir]?.sha256 ?? (first === undefined ? this.#hasher(dir).digest('hex') : digestOnce('sha256', first));
    return { bytes: this.bytes[dir], sha256, ...(why === undefined ? {} : { not_kept: why }) };
  }
}

/** The durable recording of one exchange: the object the exchange carries. */
class DurableExchangeRecording implements ExchangeRecording {
  readonly #owner: DurableSessionRecorder;
  readonly #exchange: ExchangeFacts;
  readonly #facts: RecordingFacts;
  /** Set when the request's record is attempted: the exchange is then counted in flight in its session. */
  #bodies: BodyRecording | undefined;
  #requestRecorded = false;
  /** Set once the end is written (or attempted): an exchange has one. */
  #ended = false;
  #done = false;

  constructor(owner: DurableSessionRecorder, exchange: ExchangeFacts, facts: RecordingFacts) {
    this.#owner = owner;
    this.#exchange = exchange;
    this.#facts = facts;
  }

  async recordRequest(request: RequestRecord): Promise<void> {
    const exchange = this.#exchange;
    const opened = this.#owner.session();
    const session = opened instanceof Promise ? await opened : opened;
    // Fail-closed before anything is forwarded: past the spool's cap nothing new is taken on.
    const refusal = this.#owner.recording.admission?.();
    if (refusal !== undefined) throw refusal;
    // No profile of the connection's nor the deciding rule's masks this exchange: `masked` keeps its bodies as sent.
    const unprofiled = exchange.connection.masking.length === 0 && (request.decision?.mask?.length ?? 0) === 0;
    const bodies = new BodyRecording(session, exchange, this.#facts, unprofiled, this.#owner.injects(exchange.connection));
    this.#bodies = bodies;
    session.exchangeStarted();
    const { path, query } = this.#target();
    const body = request.body;
    let bodyFields: EventFields['exchange.request']['body'];
    let payload: Buffer | undefined;
    if (body !== undefined) {
      // Computed once: the request record and the end's digest name the same bytes.
      let sha: string | undefined;
      const sha256 = (): string => (sha ??= digestOnce('sha256', body));
      if (bodies.capture.up === 'bytes') {
        // `masked` with no profile to apply keeps the bytes as sent, named by their digest as a masked body is.
        const named = exchange.connection.record.request_body === 'masked' ? { sha256: sha256() } : {};
        bodyFields = { capture: 'raw', bytes: body.length, ...named };
        payload = body;
      } else if (request.maskedBody !== undefined) {
        // Kept as masking left it: what a reviewer or a re-send may see, never the removed values.
        bodyFields = { capture: 'masked', bytes: body.length, sha256: sha256() };
        payload = request.maskedBody;
      } else {
        bodyFields = { capture: 'digest', bytes: body.length, sha256: sha256() };
      }
      // The end's digest covers these bytes too, so both records name the same body.
      bodies.wholeBody('up', body, sha);
      const why = bodyFields.capture === 'digest' ? bodies.notKept('up') : undefined;
      if (why !== undefined) bodyFields = { ...bodyFields, not_kept: why };
    } else if (this.#facts.body === 'message' && (exchange.headers['transfer-encoding'] !== undefined || Number(exchange.headers['content-length'] ?? 0) > 0)) {
      const declared = Number(exchange.headers['content-length']);
      // A body never read was kept in no form; `raw` still says what the setting would have kept.
      const capture = exchange.connection.record.request_body === 'raw' || (bodies.capture.up === 'bytes' && request.bodyUnread !== true) ? 'raw' : 'digest';
      bodyFields = request.bodyUnread
        ? { capture, unread: true, ...(Number.isSafeInteger(declared) && declared >= 0 ? { bytes: declared } : {}) }
        : { capture, streamed: true };
    }
    // A refusal before policy judged the exchange (access, path, size) records that no decision was made.
    const decision = request.decision ?? { action: 'none' as const, rule: undefined };
    try {
      await session.append(
        'exchange.request',
        {
          exchange: exchange.id,
          method: exchange.method,
          path,
          ...(query === undefined ? {} : { query }),
          headers: recordableHeaders(exchange.headers),
          decision: { action: decision.action, ...(decision.rule === undefined ? {} : { rule: decision.rule }) },
          ...(bodyFields === undefined ? {} : { body: bodyFields }),
        },
        payload,
      );
    } catch (err) {
      this.#finish();
      throw err;
    }
    this.#requestRecorded = true;
    // A held request was counted when its review was requested.
    session.addProgress({ counters: { requests: 1 } });
    this.#owner.recording.progressChanged();
  }

  async recordDecision(d: Decision): Promise<void> {
    const session = await this.#owner.session();
    await session.append('policy.decision', {
      exchange: this.#exchange.id,
      action: d.action,
      ...(d.rule === undefined ? {} : { rule: d.rule }),
      ...(d.action === 'deny' && d.reason !== undefined ? { reason: d.reason } : {}),
      ...(d.action === 'review' ? { reviewers: [...d.reviewers] } : {}),
    });
  }

  async recordReview(review: ReviewRecord): Promise<void> {
    const session = await this.#owner.session();
    if (review.type === 'review.requested') {
      // Held requests are counted when held, whatever the reviewer then decides.
      session.addProgress({ counters: { held: 1 } });
      this.#owner.recording.progressChanged();
    }
    await session.append(review.type, {
      exchange: this.#exchange.id,
      review: review.reviewId,
      ...(review.by === undefined ? {} : { by: review.by }),
      ...(review.note === undefined ? {} : { note: review.note }),
    });
  }

  recordResponse(head: ResponseHeadRecord): void {
    const bodies = this.#bodies;
    // The pipeline records a response only after its request; one without is a bug, kept off the record.
    if (bodies === undefined) throw new Error('A response was recorded before its request');
    bodies.headAt = Date.now();
    const type = head.headers['content-type'];
    bodies.sniffer = new UsageSniffer(Array.isArray(type) ? type[0] : type);
    // Deferred: written with the body's runs and the end, in their record, which the end waits for.
    bodies.track(bodies.session.defer('exchange.response', { exchange: this.#exchange.id, status: head.status, headers: recordableHeaders(head.headers) }));
  }

  async recordEnd(end: ExchangeEnding): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    const bodies = this.#bodies;
    try {
      const session = bodies?.session ?? (await this.#owner.session());
      if (bodies !== undefined && end.complete) await bodies.settle();
      else bodies?.drain();
      await this.#appendEnd(session, end);
      // The answer is complete only once everything it deferred is on disk too (written with the end).
      if (bodies !== undefined && end.complete) await bodies.settled();
    } finally {
      this.#finish();
    }
  }

  async recordError(error: ErrorRecord): Promise<void> {
    const bodies = this.#bodies;
    bodies?.drain();
    try {
      const session = bodies?.session ?? (await this.#owner.session());
      const refusedEarly = !this.#requestRecorded;
      const denied = isDenial(error.code);
      // A request refused before its record was written was never counted as one.
      session.addProgress({ counters: { ...(denied ? { denied: 1 } : { errors: 1 }), ...(refusedEarly ? { requests: 1 } : {}) } });
      this.#owner.recording.progressChanged();
      await session.append('exchange.error', {
        exchange: this.#exchange.id,
        code: error.code,
        message: error.message,
        after_response_head: error.afterResponseHead,
        ...(refusedEarly ? { request: { method: this.#exchange.method, path: this.#target().path } } : {}),
      });
      // An exchange whose request is on record ends like any other; one refused before it was has no end to pair.
      if (error.end !== undefined && !refusedEarly && !this.#ended) {
        this.#ended = true;
        await this.#appendEnd(session, error.end);
      }
    } finally {
      this.#finish();
    }
  }

  appendBestEffort(end: ExchangeEnding): void {
    // Nothing waits for it and nobody could be told of a failure; the writer still reports it to readiness.
    this.recordEnd(end).catch(() => undefined);
  }

  tap(onFailure: (error: Error) => void): BodyTap | null {
    return this.#bodies?.tap(onFailure) ?? null;
  }

  answerFacts(): AnswerFacts | undefined {
    return this.#bodies?.sniffer?.result();
  }

  /** The request target as recorded: an HTTP target's query apart (credentials in it redacted). */
  #target(): { path: string; query?: string } {
    return this.#facts.body === 'message' ? recordableTarget(this.#exchange.path) : { path: this.#exchange.path };
  }

  /** Writes what masking replaced and the exchange's `exchange.end` (digests, timings, answer facts), and counts them. */
  async #appendEnd(session: OpenSessionFile, end: ExchangeEnding): Promise<void> {
    const exchange = this.#exchange;
    const bodies = this.#bodies;
    const recording = this.#owner.recording;
    let masked: Promise<void> | undefined;
    if (end.masking !== undefined && end.masking.length > 0) {
      const counts = end.masking.map((f) => ({ entity: f.entity, rule: f.rule, count: f.count }));
      session.addProgress({ counters: { masked: counts.reduce((n, f) => n + f.count, 0) } });
      // Queued just ahead of the end, so both go in one write.
      masked = session.append('masking.summary', { exchange: exchange.id, findings: counts });
    }
    const facts = bodies?.sniffer?.result() ?? {};
    const started = exchange.startedAt;
    const reqDigest = bodies?.digest('up');
    const resDigest = bodies?.digest('down');
    const written = session.append('exchange.end', {
      exchange: exchange.id,
      status: end.status,
      complete: end.complete,
      duration_ms: end.durationMs,
      ...(bodies?.headAt === undefined ? {} : { ttfb_ms: bodies.headAt - started }),
      ...(bodies?.firstChunkAt === undefined ? {} : { first_chunk_ms: bodies.firstChunkAt - started }),
      bytes_up: end.requestBytes,
      bytes_down: end.responseBytes,
      ...(reqDigest === undefined ? {} : { request_body: reqDigest }),
      ...(resDigest === undefined ? {} : { response_body: resDigest }),
      ...(facts.model === undefined ? {} : { model: facts.model }),
      ...(facts.usage === undefined ? {} : { usage: facts.usage }),
      ...(facts.finish_reason === undefined ? {} : { finish_reason: facts.finish_reason }),
      ...(end.trailers === undefined ? {} : { trailers: recordableHeaders(end.trailers) }),
    });
    if (masked === undefined) await written;
    else await Promise.all([masked, written]);
    const usage = facts.usage;
    session.addProgress({
      counters: { bytesUp: end.requestBytes, bytesDown: end.responseBytes },
      ...(usage === undefined ? {} : { tokens: { prompt: usage.prompt_tokens ?? 0, completion: usage.completion_tokens ?? 0, total: usage.total_tokens ?? 0 } }),
      ...(facts.model === undefined ? {} : { models: [facts.model] }),
      // Each model's share, for usage by model: this exchange, and its tokens when the answer reported them.
      ...(facts.model === undefined
        ? {}
        : { modelUsage: { [facts.model]: { requests: 1, prompt: usage?.prompt_tokens ?? 0, completion: usage?.completion_tokens ?? 0 } } }),
      ...(end.status > 0 ? { lastStatus: end.status } : {}),
    });
    recording.progressChanged();
  }

  /** The exchange is over as far as its session is concerned (it may be sealed once none is in flight). */
  #finish(): void {
    if (this.#done || this.#bodies === undefined) return;
    this.#done = true;
    this.#bodies.session.exchangeDone();
  }
}
