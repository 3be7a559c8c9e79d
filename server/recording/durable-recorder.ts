import { createHash, type Hash } from 'node:crypto';
import { isDenial } from '../../shared/denial-codes.js';
import { SluiceError } from '../../shared/errors.js';
import type { Exchange } from '../pipeline/exchange.js';
import type { BodyTap, ExchangeEnding, Recorder, RecordEvent } from '../pipeline/recorder.js';
import { ChunkCoalescer, type ChunkRun } from './chunk-coalescer.js';
import { recordableHeaders, recordableTarget } from './credential-redaction.js';
import type { BodyDigest, Direction, EventFields } from './event-types.js';
import type { Recording } from './recording.js';
import type { RecordingSession } from './recording-session.js';
import { UsageSniffer } from './usage-sniffer.js';

/** Options of the durable recorder. */
export interface DurableRecorderOptions {
  readonly recording: Recording;
}

/**
 * How one direction's body is kept. `masked` keeps the bytes only when they passed through the masking
 * stage (a response on a connection with masking profiles); otherwise only sizes, times and a SHA-256,
 * never bytes that might hold what masking would remove. `raw` keeps the bytes; `none` keeps only the
 * digest in `exchange.end`, with no per-chunk records at all.
 */
type Capture = 'bytes' | 'shape' | 'digest';

function captureOf(setting: 'masked' | 'raw' | 'none'): Capture {
  return setting === 'raw' ? 'bytes' : setting === 'masked' ? 'shape' : 'digest';
}

/** One exchange while it is recorded: its chunk runs, digests and what the answer says about itself. */
class ExchangeRecording {
  readonly session: RecordingSession;
  readonly exchange: Exchange;
  capture: Record<Direction, Capture>;
  readonly #digest: Record<Direction, Hash | null>;
  readonly bytes: Record<Direction, number> = { up: 0, down: 0 };
  readonly #coalescer: ChunkCoalescer | null;
  readonly #writes = new Set<Promise<void>>();
  /** The write of the last run flushed. */
  #lastWrite: Promise<void> | undefined;
  #failure: Error | undefined;
  #onFailure: ((error: Error) => void) | undefined;
  sniffer: UsageSniffer | undefined;
  headAt: number | undefined;
  firstChunkAt: number | undefined;
  requestRecorded = false;

  constructor(session: RecordingSession, exchange: Exchange) {
    this.session = session;
    this.exchange = exchange;
    const { connection } = exchange;
    this.capture =
      connection.type === 'tcp'
        ? { up: connection.record.raw ? 'bytes' : 'shape', down: connection.record.raw ? 'bytes' : 'shape' }
        : { up: captureOf(connection.record.request_body), down: captureOf(connection.record.response_body) };
    this.#digest = {
      up: connection.type === 'http' && this.capture.up !== 'bytes' ? createHash('sha256') : null,
      down: connection.type === 'http' && this.capture.down !== 'bytes' ? createHash('sha256') : null,
    };
    const wantsRuns = this.capture.up !== 'digest' || this.capture.down !== 'digest';
    this.#coalescer = wantsRuns
      ? new ChunkCoalescer({ keep: this.#keep, now: () => session.writer.now(), flush: (run) => this.#write(run) })
      : null;
    this.#keep.up = this.capture.up === 'bytes';
    this.#keep.down = this.capture.down === 'bytes';
  }

  /** Which directions' bytes the chunk runs carry; the coalescer reads it per chunk. */
  readonly #keep: Record<Direction, boolean> = { up: false, down: false };

  /** The response is masked before the caller (and this recording) sees it: `masked` may now keep its bytes. */
  downMasked(): void {
    if (this.exchange.connection.type === 'http' && this.exchange.connection.record.response_body === 'masked') {
      this.capture = { ...this.capture, down: 'bytes' };
      this.#keep.down = true;
    }
  }

  tap(onFailure: ((error: Error) => void) | undefined): BodyTap {
    this.#onFailure = onFailure;
    return {
      upRecorded: (chunk) => {
        this.#chunk('up', chunk);
        if (this.#coalescer === null || this.capture.up === 'digest') return this.#failure === undefined ? Promise.resolve() : Promise.reject(this.#failure);
        // The run holding this chunk is written now, alone: the chunk waits for it.
        this.#coalescer.drain();
        return this.#lastWrite ?? Promise.resolve();
      },
      down: (chunk) => this.#chunk('down', chunk),
      downMasked: () => this.downMasked(),
    };
  }

  /** A body that arrived whole and is recorded with its request: counted and digested like streamed bytes. */
  wholeBody(dir: Direction, body: Buffer): void {
    this.bytes[dir] += body.length;
    this.#digest[dir]?.update(body);
  }

  #chunk(dir: Direction, chunk: Buffer): void {
    this.bytes[dir] += chunk.length;
    this.#digest[dir]?.update(chunk);
    if (dir === 'down') {
      this.firstChunkAt ??= Date.now();
      this.sniffer?.push(chunk);
    }
    if (this.#coalescer !== null && this.capture[dir] !== 'digest') this.#coalescer.push(dir, chunk);
  }

  #write(run: ChunkRun): void {
    const type = this.exchange.connection.type === 'tcp' ? 'tcp.chunk' : 'exchange.chunk';
    const fields: EventFields['exchange.chunk'] = { exchange: this.exchange.id, dir: run.dir, bytes: run.bytes, ...(run.parts.length > 1 ? { parts: run.parts } : {}) };
    const write = this.session.append(type, fields, run.payload, run.t);
    this.#lastWrite = write;
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

  /** Flushes chunk runs and waits for them; rejects with the first chunk that could not be written. */
  async settle(): Promise<void> {
    this.#coalescer?.drain();
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes]);
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Flushes chunk runs without waiting for them (the exchange failed or the caller left). */
  drain(): void {
    this.#coalescer?.drain();
  }

  digest(dir: Direction): BodyDigest | undefined {
    const hash = this.#digest[dir];
    if (hash === null || this.bytes[dir] === 0) return undefined;
    return { bytes: this.bytes[dir], sha256: hash.digest('hex') };
  }
}

/**
 * The pipeline's durable recorder: every event becomes an encrypted, chained record of the exchange's
 * session. `exchange.request`, `exchange.response` and `exchange.end` resolve only once written, so the
 * pipeline forwards nothing unrecorded and ends no response before its end is recorded.
 */
export function createDurableRecorder(options: DurableRecorderOptions): Recorder {
  const { recording } = options;
  const exchanges = new Map<string, ExchangeRecording>();

  async function sessionOf(exchange: Exchange): Promise<RecordingSession> {
    const opening = recording.session(exchange.session.id);
    if (opening === undefined) {
      // A session whose file could not be created is forgotten at once; the storage failure is the reason.
      const cause = recording.failureCause ?? 'session not open';
      throw new SluiceError('ERR_RECORDING_UNAVAILABLE', {
        message: `Session ${exchange.session.id} has no open recording (${cause}); the exchange was refused`,
        details: { cause },
      });
    }
    return opening;
  }

  function finish(state: ExchangeRecording): void {
    if (exchanges.get(state.exchange.id) === state) {
      exchanges.delete(state.exchange.id);
      state.session.exchangeDone();
    }
  }

  /** Writes an exchange's `exchange.end` (digests, timings and answer facts from its recording) and counts it. */
  async function appendEnd(session: RecordingSession, state: ExchangeRecording | undefined, exchange: Exchange, end: ExchangeEnding): Promise<void> {
    const facts = state?.sniffer?.result() ?? {};
    const started = exchange.startedAt;
    const reqDigest = state?.digest('up');
    const resDigest = state?.digest('down');
    await session.append('exchange.end', {
      exchange: exchange.id,
      status: end.status,
      complete: end.complete,
      duration_ms: end.durationMs,
      ...(state?.headAt === undefined ? {} : { ttfb_ms: state.headAt - started }),
      ...(state?.firstChunkAt === undefined ? {} : { first_chunk_ms: state.firstChunkAt - started }),
      bytes_up: end.requestBytes,
      bytes_down: end.responseBytes,
      ...(reqDigest === undefined ? {} : { request_body: reqDigest }),
      ...(resDigest === undefined ? {} : { response_body: resDigest }),
      ...(facts.model === undefined ? {} : { model: facts.model }),
      ...(facts.usage === undefined ? {} : { usage: facts.usage }),
      ...(facts.finish_reason === undefined ? {} : { finish_reason: facts.finish_reason }),
    });
    const usage = facts.usage;
    session.addProgress({
      counters: { bytesUp: end.requestBytes, bytesDown: end.responseBytes },
      ...(usage === undefined ? {} : { tokens: { prompt: usage.prompt_tokens ?? 0, completion: usage.completion_tokens ?? 0, total: usage.total_tokens ?? 0 } }),
      ...(facts.model === undefined ? {} : { models: [facts.model] }),
      ...(end.status > 0 ? { lastStatus: end.status } : {}),
    });
    recording.progressChanged();
  }

  async function emit(event: RecordEvent): Promise<void> {
    const { exchange } = event;
    const x = exchange.id;
    switch (event.type) {
      case 'exchange.request': {
        const session = await sessionOf(exchange);
        const state = new ExchangeRecording(session, exchange);
        exchanges.set(x, state);
        session.exchangeStarted();
        const { path, query } = exchange.connection.type === 'http' ? recordableTarget(exchange.path) : { path: exchange.path, query: undefined };
        const body = event.body;
        let bodyFields: EventFields['exchange.request']['body'];
        let payload: Buffer | undefined;
        if (body !== undefined) {
          if (state.capture.up === 'bytes') {
            bodyFields = { capture: 'raw', bytes: body.length };
            payload = body;
          } else if (event.maskedBody !== undefined) {
            // Kept as masking left it: what a reviewer or a re-send may see, never the removed values.
            bodyFields = { capture: 'masked', bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') };
            payload = event.maskedBody;
          } else {
            bodyFields = { capture: 'digest', bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') };
          }
          // The end's digest covers these bytes too, so both records name the same body.
          state.wholeBody('up', body);
        } else if (exchange.connection.type === 'http' && (exchange.headers['transfer-encoding'] !== undefined || Number(exchange.headers['content-length'] ?? 0) > 0)) {
          const declared = Number(exchange.headers['content-length']);
          bodyFields = event.bodyUnread
            ? { capture: state.capture.up === 'bytes' ? 'raw' : 'digest', unread: true, ...(Number.isSafeInteger(declared) && declared >= 0 ? { bytes: declared } : {}) }
            : { capture: state.capture.up === 'bytes' ? 'raw' : 'digest', streamed: true };
        }
        // A refusal before policy judged the exchange (access, path, size) records that no decision was made.
        const decision = event.decision ?? { action: 'none' as const, rule: undefined };
        try {
          await session.append(
            'exchange.request',
            {
              exchange: x,
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
          finish(state);
          throw err;
        }
        state.requestRecorded = true;
        // A held request was counted when its review was requested.
        session.addProgress({ counters: { requests: 1 } });
        recording.progressChanged();
        return;
      }
      case 'exchange.response': {
        const state = exchanges.get(x);
        const session = state?.session ?? (await sessionOf(exchange));
        if (state !== undefined) {
          state.headAt = Date.now();
          const type = event.headers['content-type'];
          state.sniffer = new UsageSniffer(Array.isArray(type) ? type[0] : type);
        }
        await session.append('exchange.response', { exchange: x, status: event.status, headers: recordableHeaders(event.headers) });
        return;
      }
      case 'exchange.end': {
        const state = exchanges.get(x);
        const session = state?.session ?? (await sessionOf(exchange));
        try {
          if (state !== undefined && event.complete) await state.settle();
          else state?.drain();
          await appendEnd(session, state, exchange, event);
        } finally {
          if (state !== undefined) finish(state);
        }
        return;
      }
      case 'exchange.error': {
        const state = exchanges.get(x);
        state?.drain();
        try {
          const session = state?.session ?? (await sessionOf(exchange));
          const refusedEarly = state === undefined || !state.requestRecorded;
          const denied = isDenial(event.code);
          session.addProgress({ counters: { ...(denied ? { denied: 1 } : { errors: 1 }), ...(refusedEarly && state === undefined ? { requests: 1 } : {}) } });
          recording.progressChanged();
          await session.append('exchange.error', {
            exchange: x,
            code: event.code,
            message: event.message,
            after_response_head: event.afterResponseHead,
            ...(refusedEarly ? { request: { method: exchange.method, path: recordableTarget(exchange.path).path } } : {}),
          });
          // An exchange whose request is on record ends like any other; one refused before it was has no end to pair.
          if (event.end !== undefined && state !== undefined && state.requestRecorded) await appendEnd(session, state, exchange, event.end);
        } finally {
          if (state !== undefined) finish(state);
        }
        return;
      }
      case 'policy.decision': {
        const session = await sessionOf(exchange);
        const d = event.decision;
        await session.append('policy.decision', {
          exchange: x,
          action: d.action,
          ...(d.rule === undefined ? {} : { rule: d.rule }),
          ...(d.action === 'deny' && d.reason !== undefined ? { reason: d.reason } : {}),
          ...(d.action === 'review' ? { reviewers: [...d.reviewers] } : {}),
        });
        return;
      }
      case 'review.requested':
      case 'review.approved':
      case 'review.rejected':
      case 'review.expired': {
        const session = await sessionOf(exchange);
        if (event.type === 'review.requested') {
          // Held requests are counted when held, whatever the reviewer then decides.
          session.addProgress({ counters: { held: 1 } });
          recording.progressChanged();
        }
        await session.append(event.type, {
          exchange: x,
          review: event.reviewId,
          ...(event.by === undefined ? {} : { by: event.by }),
          ...(event.note === undefined ? {} : { note: event.note }),
        });
        return;
      }
      case 'masking.summary': {
        const session = await sessionOf(exchange);
        const findings = event.findings.map((f) => ({ entity: f.entity, rule: f.rule, count: f.count }));
        session.addProgress({ counters: { masked: findings.reduce((n, f) => n + f.count, 0) } });
        recording.progressChanged();
        await session.append('masking.summary', { exchange: x, findings });
        return;
      }
    }
  }

  return {
    emit,
    tap(exchange, onFailure) {
      return exchanges.get(exchange.id)?.tap(onFailure) ?? null;
    },
  };
}
