import { describe, expect, it } from 'vitest';
import { connectionSchema, type HttpConnectionConfig } from '../../server/config/schema.js';
import { createExchangeObserver, type ExchangeOutcome } from '../../server/metrics/exchange-observer.js';
import type { SessionRecorder } from '../../server/pipeline/recorder.js';
import type { AnswerFacts } from '../../server/recording/usage-sniffer.js';
import { startExchange } from '../../server/pipeline/exchange.js';
import { HTTP_RECORDING } from '../../server/protocols/http-carrier.js';
import { recordedEvents } from '../helpers/recorded-events.js';

const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:9', allow_groups: ['ml-eng'] }) as HttpConnectionConfig;
const principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const ANSWER = JSON.stringify({ model: 'gpt-test', choices: [{ finish_reason: 'stop' }], usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } });

/**
 * One exchange answered with `ANSWER` through an observer; the outcome its listener was told. With `facts`,
 * the recording reads answers itself and says this.
 */
async function observedOutcome(facts?: AnswerFacts): Promise<ExchangeOutcome> {
  const told: ExchangeOutcome[] = [];
  const observer = createExchangeObserver([(outcome) => told.push(outcome)]);
  const events = recordedEvents().recorder;
  const recorder: SessionRecorder = facts === undefined ? events : { begin: (x, f) => ({ ...events.begin(x, f), answerFacts: () => facts }) };
  const exchange = observer.observe(
    startExchange(
      { principal, connection, session: { id: 'ses_test', recorder }, clientAddress: '127.0.0.1', via: 'proxy', method: 'POST', path: '/v1/chat/completions', headers: {} },
      HTTP_RECORDING,
    ),
  );
  await exchange.recording.recordRequest({ decision: { action: 'allow' } });
  const tap = exchange.recording.tap(() => undefined);
  exchange.recording.recordResponse({ status: 200, headers: { 'content-type': 'application/json' } });
  tap?.down(Buffer.from(ANSWER));
  await exchange.recording.recordEnd({ status: 200, complete: true, requestBytes: 0, responseBytes: ANSWER.length, durationMs: 1 });
  expect(told).toHaveLength(1);
  return told[0]!;
}

describe('the exchange observer', () => {
  it("tells its listeners the answer's model and usage", async () => {
    const outcome = await observedOutcome();
    expect(outcome.answer).toEqual({ model: 'gpt-test', usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 }, finish_reason: 'stop' });
  });

  it('takes the facts from a recording that reads answers itself, rather than reading each answer twice', async () => {
    const outcome = await observedOutcome({ model: 'as-recorded', usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } });
    expect(outcome.answer).toEqual({ model: 'as-recorded', usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } });
    expect(outcome).toMatchObject({ decision: 'allow', code: 'none', end: { status: 200, complete: true } });
  });
});
