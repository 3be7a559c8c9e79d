/**
 * A session recorder for tests that drive the pipeline without storage: it keeps each record as an event
 * (`{ type, ...fields }`, named like the records on disk) and lets a test hold or fail any durable one.
 */
import type { ExchangeFacts } from '../../server/pipeline/exchange.js';
import type { Decision } from '../../server/pipeline/policy-stage.js';
import type {
  BodyTap,
  ErrorRecord,
  ExchangeEnding,
  ExchangeRecording,
  RequestRecord,
  ResponseHeadRecord,
  ReviewRecord,
  SessionRecorder,
} from '../../server/pipeline/recorder.js';

/** One record as a test sees it. */
export type RecordedEvent =
  | ({ readonly type: 'exchange.request'; readonly exchange: ExchangeFacts } & RequestRecord)
  | ({ readonly type: 'exchange.response'; readonly exchange: ExchangeFacts } & ResponseHeadRecord)
  | ({ readonly type: 'exchange.end'; readonly exchange: ExchangeFacts; readonly bestEffort?: true } & ExchangeEnding)
  | ({ readonly type: 'exchange.error'; readonly exchange: ExchangeFacts } & ErrorRecord)
  | { readonly type: 'policy.decision'; readonly exchange: ExchangeFacts; readonly decision: Decision }
  | ({ readonly exchange: ExchangeFacts } & ReviewRecord);

/** What a test may do to the records. */
export interface RecordedEventsOptions {
  /** Runs before a durable record resolves; a rejection fails it (the recording refused it). */
  readonly onRecord?: (event: RecordedEvent) => Promise<void> | void;
  /** The body tap of each exchange; none by default, so bytes pass with no gate. */
  readonly tap?: (exchange: ExchangeFacts, onFailure: (error: Error) => void) => BodyTap | null;
}

/** A session recorder that keeps its records in `events`. */
export function recordedEvents(options: RecordedEventsOptions = {}): { readonly recorder: SessionRecorder; readonly events: RecordedEvent[] } {
  const events: RecordedEvent[] = [];
  const durable = async (event: RecordedEvent): Promise<void> => {
    events.push(event);
    await options.onRecord?.(event);
  };
  const recorder: SessionRecorder = {
    begin(exchange): ExchangeRecording {
      return {
        recordRequest: (request) => durable({ type: 'exchange.request', exchange, ...request }),
        recordDecision: (decision) => durable({ type: 'policy.decision', exchange, decision }),
        recordReview: (review) => durable({ exchange, ...review }),
        recordResponse: (head) => void events.push({ type: 'exchange.response', exchange, ...head }),
        recordEnd: (end) => durable({ type: 'exchange.end', exchange, ...end }),
        recordError: (error) => durable({ type: 'exchange.error', exchange, ...error }),
        appendBestEffort: (end) => void events.push({ type: 'exchange.end', exchange, bestEffort: true, ...end }),
        tap: (onFailure) => options.tap?.(exchange, onFailure) ?? null,
      };
    },
  };
  return { recorder, events };
}
