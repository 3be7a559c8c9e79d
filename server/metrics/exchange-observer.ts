import type { Exchange } from '../pipeline/exchange.js';
import type { Decision } from '../pipeline/policy-stage.js';
import type { BodyTap, ExchangeEnding, ExchangeRecording } from '../pipeline/recorder.js';
import { UsageSniffer, type AnswerFacts } from '../recording/usage-sniffer.js';

/** Watches exchanges through the pipeline; `observe` is called once per exchange, before any stage runs. */
export interface ExchangeObserver {
  /** The exchange the stages see: the same one, with a recording that reports what it records. */
  observe(exchange: Exchange): Exchange;
}

/** How one exchange ended, as its recording holds it; told once per exchange. */
export interface ExchangeOutcome {
  /** The exchange as the stages saw it. */
  readonly exchange: Exchange;
  /** What policy decided; `none` when the exchange was refused before policy judged it. */
  readonly decision: Decision['action'] | 'none';
  /** The error code of a refusal or failure; `none` when the exchange was answered without one. */
  readonly code: string;
  /** The end as recorded, when there was one. */
  readonly end?: ExchangeEnding;
  /** When the upstream call started; absent for an exchange answered without one. */
  readonly forwardedAt?: number;
  /** When the first answer byte went to the caller. */
  readonly firstChunkAt?: number;
  /** The answer was a stream of events (`text/event-stream`). */
  readonly streamed: boolean;
  /** What the answer said about itself (model, usage), when it ended whole. */
  readonly answer?: AnswerFacts;
}

/** Receives each exchange's outcome as soon as it is on record; must return at once and never throw. */
export type OutcomeListener = (outcome: ExchangeOutcome) => void;

/**
 * An observer of the recording: every fact the listeners (metrics, quotas) need is one the pipeline
 * records anyway (decision, response head, body bytes, end, error), so the stages carry no calls of their
 * own, and what is counted is exactly what is on record.
 */
export function createExchangeObserver(listeners: readonly OutcomeListener[]): ExchangeObserver {
  return {
    observe(exchange) {
      const observed: { -readonly [K in keyof Exchange]: Exchange[K] } = { ...exchange };
      observed.recording = new ObservedRecording(exchange.recording, observed, listeners);
      return observed;
    },
  };
}

/** One exchange's recording, telling the listeners its outcome once it is on record. */
class ObservedRecording implements ExchangeRecording {
  readonly #inner: ExchangeRecording;
  readonly #exchange: Exchange;
  readonly #listeners: readonly OutcomeListener[];
  #decision: Decision['action'] | 'none' = 'none';
  /** When the upstream call started; unset for an exchange answered without one. */
  #forwardedAt: number | undefined;
  #sniffer: UsageSniffer | undefined;
  #streamed = false;
  #firstChunkAt: number | undefined;
  /** An exchange is told once, by whichever of end, error or a lost caller's end comes first. */
  #told = false;

  constructor(inner: ExchangeRecording, exchange: Exchange, listeners: readonly OutcomeListener[]) {
    this.#inner = inner;
    this.#exchange = exchange;
    this.#listeners = listeners;
  }

  recordRequest(request: Parameters<ExchangeRecording['recordRequest']>[0]): Promise<void> {
    if (request.decision !== undefined) this.#decision = request.decision.action;
    return this.#inner.recordRequest(request);
  }

  recordDecision(decision: Decision): Promise<void> {
    this.#decision = decision.action;
    return this.#inner.recordDecision(decision);
  }

  recordReview(review: Parameters<ExchangeRecording['recordReview']>[0]): Promise<void> {
    return this.#inner.recordReview(review);
  }

  recordResponse(head: Parameters<ExchangeRecording['recordResponse']>[0]): void {
    const type = head.headers['content-type'];
    const contentType = Array.isArray(type) ? type[0] : type;
    this.#streamed = (contentType ?? '').toLowerCase().includes('text/event-stream');
    // Only answers that can report usage are read: model servers answer JSON or SSE.
    this.#sniffer = new UsageSniffer(contentType);
    this.#inner.recordResponse(head);
  }

  async recordEnd(end: ExchangeEnding): Promise<void> {
    await this.#inner.recordEnd(end);
    this.#tell(end, 'none', true);
  }

  async recordError(error: Parameters<ExchangeRecording['recordError']>[0]): Promise<void> {
    try {
      await this.#inner.recordError(error);
    } finally {
      // A refusal is told even when its record failed: the caller was refused either way.
      this.#tell(error.end, error.code, false);
    }
  }

  appendBestEffort(end: ExchangeEnding): void {
    this.#inner.appendBestEffort(end);
    this.#tell(end, 'none', false);
  }

  tap(onFailure: (error: Error) => void): BodyTap | null {
    // The pipeline asks for the tap only as it starts the upstream call.
    this.#forwardedAt = Date.now();
    const inner = this.#inner.tap(onFailure);
    return {
      upRecorded: inner === null ? () => Promise.resolve() : (chunk) => inner.upRecorded(chunk),
      down: (chunk) => {
        this.#firstChunkAt ??= Date.now();
        this.#sniffer?.push(chunk);
        inner?.down(chunk);
      },
      ...(inner?.downMasked === undefined ? {} : { downMasked: () => inner.downMasked!() }),
    };
  }

  #tell(end: ExchangeEnding | undefined, code: string, answered: boolean): void {
    if (this.#told) return;
    this.#told = true;
    // Usage is only whole in an answer that ended whole.
    const answer = answered ? this.#sniffer?.result() : undefined;
    const outcome: ExchangeOutcome = {
      exchange: this.#exchange,
      decision: this.#decision,
      code,
      streamed: this.#streamed,
      ...(end === undefined ? {} : { end }),
      ...(this.#forwardedAt === undefined ? {} : { forwardedAt: this.#forwardedAt }),
      ...(this.#firstChunkAt === undefined ? {} : { firstChunkAt: this.#firstChunkAt }),
      ...(answer === undefined ? {} : { answer }),
    };
    for (const listener of this.#listeners) listener(outcome);
  }
}
