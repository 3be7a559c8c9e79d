import type { Exchange } from '../pipeline/exchange.js';
import type { Decision } from '../pipeline/policy-stage.js';
import type { BodyTap, ExchangeEnding, ExchangeRecording } from '../pipeline/recorder.js';
import { UsageSniffer, type AnswerFacts } from '../recording/usage-sniffer.js';
import { RequestModelScanner } from '../telemetry/request-model-scanner.js';

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
  /** When each step reached the recording: the stage timings traces show (none unless the observer was asked to time them). */
  readonly steps: Readonly<ExchangeSteps>;
  /** The request body's top-level `model`, when the observer reads it (`readRequestModel`) and the body had one. */
  readonly requestModel?: string;
}

/** When each step of an exchange reached its recording, in milliseconds since the epoch; unset for a step not taken. */
export interface ExchangeSteps {
  /** Policy's decision was recorded: with a refusal, a review's request, or the request record (an allow). */
  decidedAt?: number;
  reviewRequestedAt?: number;
  /** The review's last step (approved, rejected, expired). */
  reviewDecidedAt?: number;
  /** The request record, written before anything is forwarded: asked for, then on record. */
  requestRecordingAt?: number;
  requestRecordedAt?: number;
  /** The answer's head went through the masking stage, which rewrites the body from here on. */
  maskingAt?: number;
  /** The end (or the refusal) record: asked for, then written or failed. */
  endingAt?: number;
  endedAt?: number;
}

/** What an observer reads beyond what every listener needs; each costs per exchange, so each is asked for. */
export interface ExchangeObserverOptions {
  /** Read the top-level `model` of request bodies as they are recorded (traces' `gen_ai.request.model`). Default false. */
  readonly readRequestModel?: boolean;
  /** Time each step of an exchange (`ExchangeOutcome.steps`, for traces' stage spans). Default false. */
  readonly timeSteps?: boolean;
}

/** The steps of an exchange whose observer does not time them. */
const UNTIMED: Readonly<ExchangeSteps> = Object.freeze({});

/** Receives each exchange's outcome as soon as it is on record; must return at once and never throw. */
export type OutcomeListener = (outcome: ExchangeOutcome) => void;

/**
 * An observer of the recording: every fact the listeners (metrics, quotas) need is one the pipeline
 * records anyway (decision, response head, body bytes, end, error), so the stages carry no calls of their
 * own, and what is counted is exactly what is on record.
 */
export function createExchangeObserver(listeners: readonly OutcomeListener[], options: ExchangeObserverOptions = {}): ExchangeObserver {
  const readRequestModel = options.readRequestModel ?? false;
  const timeSteps = options.timeSteps ?? false;
  return {
    observe(exchange) {
      const observed: { -readonly [K in keyof Exchange]: Exchange[K] } = { ...exchange };
      observed.recording = new ObservedRecording(exchange.recording, observed, listeners, readRequestModel ? new RequestModelScanner() : undefined, timeSteps ? {} : undefined);
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
  /** Unset when the steps are not timed: each time read costs every exchange, and only traces show them. */
  readonly #steps: ExchangeSteps | undefined;
  readonly #scanner: RequestModelScanner | undefined;

  constructor(inner: ExchangeRecording, exchange: Exchange, listeners: readonly OutcomeListener[], scanner: RequestModelScanner | undefined, steps: ExchangeSteps | undefined) {
    this.#inner = inner;
    this.#exchange = exchange;
    this.#listeners = listeners;
    this.#scanner = scanner;
    this.#steps = steps;
  }

  async recordRequest(request: Parameters<ExchangeRecording['recordRequest']>[0]): Promise<void> {
    if (request.decision !== undefined) this.#decision = request.decision.action;
    const steps = this.#steps;
    if (steps !== undefined) {
      steps.requestRecordingAt = Date.now();
      steps.decidedAt ??= steps.requestRecordingAt;
    }
    if (request.body !== undefined) this.#scanner?.push(request.body);
    if (steps === undefined) return this.#inner.recordRequest(request);
    await this.#inner.recordRequest(request);
    steps.requestRecordedAt = Date.now();
  }

  recordDecision(decision: Decision): Promise<void> {
    this.#decision = decision.action;
    if (this.#steps !== undefined) this.#steps.decidedAt ??= Date.now();
    return this.#inner.recordDecision(decision);
  }

  recordReview(review: Parameters<ExchangeRecording['recordReview']>[0]): Promise<void> {
    const steps = this.#steps;
    if (steps !== undefined) {
      const now = Date.now();
      if (review.type === 'review.requested') {
        steps.decidedAt ??= now;
        steps.reviewRequestedAt ??= now;
      } else steps.reviewDecidedAt = now;
    }
    return this.#inner.recordReview(review);
  }

  recordResponse(head: Parameters<ExchangeRecording['recordResponse']>[0]): void {
    const type = head.headers['content-type'];
    const contentType = Array.isArray(type) ? type[0] : type;
    this.#streamed = (contentType ?? '').toLowerCase().includes('text/event-stream');
    // Only answers that can report usage are read (model servers answer JSON or SSE), and here only when the
    // recording does not read them already (the durable recorder does, for the index): each read costs per chunk.
    this.#sniffer = this.#inner.answerFacts === undefined ? new UsageSniffer(contentType) : undefined;
    this.#inner.recordResponse(head);
  }

  async recordEnd(end: ExchangeEnding): Promise<void> {
    if (this.#steps !== undefined) this.#steps.endingAt ??= Date.now();
    await this.#inner.recordEnd(end);
    if (this.#steps !== undefined) this.#steps.endedAt ??= Date.now();
    this.#tell(end, 'none', true);
  }

  async recordError(error: Parameters<ExchangeRecording['recordError']>[0]): Promise<void> {
    if (this.#steps !== undefined) this.#steps.endingAt ??= Date.now();
    try {
      await this.#inner.recordError(error);
    } finally {
      if (this.#steps !== undefined) this.#steps.endedAt ??= Date.now();
      // A refusal is told even when its record failed: the caller was refused either way.
      this.#tell(error.end, error.code, false);
    }
  }

  appendBestEffort(end: ExchangeEnding): void {
    const steps = this.#steps;
    if (steps !== undefined) {
      steps.endingAt ??= Date.now();
      steps.endedAt ??= steps.endingAt;
    }
    this.#inner.appendBestEffort(end);
    this.#tell(end, 'none', false);
  }

  tap(onFailure: (error: Error) => void): BodyTap | null {
    // The pipeline asks for the tap only as it starts the upstream call.
    this.#forwardedAt = Date.now();
    const inner = this.#inner.tap(onFailure);
    const scanner = this.#scanner;
    return {
      upRecorded:
        scanner === undefined
          ? inner === null
            ? () => Promise.resolve()
            : (chunk) => inner.upRecorded(chunk)
          : (chunk) => {
              if (!scanner.done) scanner.push(chunk);
              return inner === null ? Promise.resolve() : inner.upRecorded(chunk);
            },
      down: (chunk) => {
        this.#firstChunkAt ??= Date.now();
        this.#sniffer?.push(chunk);
        inner?.down(chunk);
      },
      downMasked: () => {
        if (this.#steps !== undefined) this.#steps.maskingAt ??= Date.now();
        inner?.downMasked?.();
      },
    };
  }

  #tell(end: ExchangeEnding | undefined, code: string, answered: boolean): void {
    if (this.#told) return;
    this.#told = true;
    // Usage is only whole in an answer that ended whole.
    const answer = !answered ? undefined : this.#inner.answerFacts === undefined ? this.#sniffer?.result() : this.#inner.answerFacts();
    // Optional facts set one by one (absent, not undefined), without the spreads' temporary objects: once per exchange.
    const outcome: { -readonly [K in keyof ExchangeOutcome]: ExchangeOutcome[K] } = {
      exchange: this.#exchange,
      decision: this.#decision,
      code,
      streamed: this.#streamed,
      steps: this.#steps ?? UNTIMED,
    };
    if (this.#scanner?.model !== undefined) outcome.requestModel = this.#scanner.model;
    if (end !== undefined) outcome.end = end;
    if (this.#forwardedAt !== undefined) outcome.forwardedAt = this.#forwardedAt;
    if (this.#firstChunkAt !== undefined) outcome.firstChunkAt = this.#firstChunkAt;
    if (answer !== undefined) outcome.answer = answer;
    for (const listener of this.#listeners) listener(outcome);
  }
}
