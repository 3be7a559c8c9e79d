import type { StageAnswer } from './approval-stage.js';
import type { Carrier } from './carrier.js';
import type { Exchange } from './exchange.js';
import type { MaskingStage } from './masking-stage.js';
import type { Decision } from './policy-stage.js';
import { requestRecord, type ExchangeProgress } from './refusal-record.js';

/**
 * Answers an exchange that is not forwarded (a review its caller did not wait for) and records it like any
 * other: its request with the body, the answer's head, and its end, all on disk before the caller sees the answer.
 */
export async function sendStageAnswer(
  exchange: Exchange,
  carrier: Carrier,
  masking: MaskingStage,
  decision: Decision,
  answer: StageAnswer,
  progress: ExchangeProgress,
): Promise<void> {
  const { recording } = exchange;
  const { body } = carrier.takeArrivedBody();
  progress.requestRecorded = true;
  await recording.recordRequest(await requestRecord(exchange, masking, decision, body));
  const payload = Buffer.from(answer.body);
  const headers = { ...answer.headers, 'content-type': 'application/json', 'content-length': String(payload.length), 'x-request-id': exchange.id };
  recording.recordResponse({ status: answer.status, headers });
  const gone = carrier.gone;
  await recording.recordEnd({
    status: gone ? 0 : answer.status,
    complete: !gone,
    requestBytes: body?.length ?? 0,
    responseBytes: gone ? 0 : payload.length,
    durationMs: Date.now() - exchange.startedAt,
  });
  if (!gone) carrier.answer(answer.status, headers, payload);
}
