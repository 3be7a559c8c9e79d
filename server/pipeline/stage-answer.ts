import type { IncomingMessage, ServerResponse } from 'node:http';
import type { StageAnswer } from './approval-stage.js';
import { hasRequestBody } from './bounded-body.js';
import type { Exchange } from './exchange.js';
import type { MaskingStage } from './masking-stage.js';
import type { Decision } from './policy-stage.js';
import type { Recorder } from './recorder.js';
import { arrivedBody, requestEvent, type ExchangeProgress } from './refusal-record.js';

/**
 * The whole request body when it has arrived (read ahead for policy and put back), without taking it: it is
 * read and put back at once, so it still goes upstream as it came. Empty for a request without a body;
 * undefined while any of it is still on its way (longer than the read-ahead).
 */
export function peekArrivedBody(req: IncomingMessage): Buffer | undefined {
  if (!hasRequestBody(req)) return Buffer.alloc(0);
  if (!req.complete || req.readableEnded) return undefined;
  const n = req.readableLength;
  if (n === 0) return Buffer.alloc(0);
  const whole = req.read(n) as Buffer | null;
  if (whole === null) return undefined;
  // Synchronously after the read: 'end' comes only on a later tick, and only if the buffer is still empty.
  req.unshift(whole);
  return whole;
}

/** What answering an exchange in place of the upstream needs. */
export interface StageAnswerOptions {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly exchange: Exchange;
  readonly decision: Decision;
  readonly answer: StageAnswer;
  readonly recorder: Recorder;
  readonly masking: MaskingStage;
  readonly progress: ExchangeProgress;
}

/**
 * Answers an exchange that is not forwarded (a review its caller did not wait for) and records it like any
 * other: its request with the body, the answer's head, and its end, each before the caller sees the answer.
 */
export async function sendStageAnswer(o: StageAnswerOptions): Promise<void> {
  const { req, res, exchange, answer, recorder } = o;
  const body = arrivedBody(req);
  o.progress.requestRecorded = true;
  await recorder.emit(await requestEvent(exchange, o.masking, o.decision, body));
  const payload = Buffer.from(answer.body);
  const headers = { ...answer.headers, 'content-type': 'application/json', 'content-length': String(payload.length), 'x-request-id': exchange.id };
  await recorder.emit({ type: 'exchange.response', exchange, status: answer.status, headers });
  const gone = res.destroyed;
  await recorder.emit({
    type: 'exchange.end',
    exchange,
    status: gone ? 0 : answer.status,
    complete: !gone,
    requestBytes: body?.length ?? 0,
    responseBytes: gone ? 0 : payload.length,
    durationMs: Date.now() - exchange.startedAt,
  });
  if (gone) return;
  res.writeHead(answer.status, headers);
  res.end(payload);
}
