/**
 * Bodies are recorded by default: a fresh config whose connection has no masking profile keeps the request
 * and the answer as sent (`record.*_body: masked`), and the events API shows them; a connection that keeps
 * none says why in the events, `sessions show` and the HAR export.
 */
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { closedSessions, gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();
const PROMPT = 'What did the quarterly report say about churn?';

interface EventLine {
  type: string;
  exchange?: string;
  dir?: string;
  body?: { capture: string; not_kept?: string };
  request_body?: { not_kept?: string };
  response_body?: { not_kept?: string };
  payload?: string;
}

async function gatewayWith(record?: Record<string, string>): Promise<TestGateway> {
  return gateways.start({
    connections: ({ model }) => [modelConnection(model, record === undefined ? {} : { record })],
    config: { roles: { auditor: ['security'] }, storage: { proxy_session_idle: '300ms' } },
  });
}

/** One chat call as alice through the direct proxy; then the session's events as the auditor reads them. */
async function recordedCall(gw: TestGateway): Promise<{ answer: string; events: EventLine[]; sessionId: string; auditor: string }> {
  const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: await gw.token('alice'), maxRetries: 0 });
  const completion = await sdk.chat.completions.create({ model: 'demo-small', messages: [{ role: 'user', content: PROMPT }] });
  const auditor = await gw.token('carol');
  const [session] = await closedSessions(gw.url, auditor, 1);
  const res = await fetch(`${gw.url}/v1/sessions/${session!.id}/events`, { headers: { authorization: `Bearer ${auditor}` } });
  expect(res.status).toBe(200);
  const events = (await res.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as EventLine);
  return { answer: completion.choices[0]!.message.content!, events, sessionId: session!.id, auditor };
}

describe('recorded bodies by default', () => {
  it('keeps the request and the answer as sent when no masking profile applies, and the events API shows them', async () => {
    const gw = await gatewayWith();
    const { answer, events } = await recordedCall(gw);
    const request = events.find((e) => e.type === 'exchange.request')!;
    expect(JSON.parse(Buffer.from(request.payload!, 'base64').toString())).toMatchObject({ model: 'demo-small', messages: [{ role: 'user', content: PROMPT }] });
    const down = events.filter((e) => e.type === 'exchange.chunk' && e.dir === 'down').map((e) => Buffer.from(e.payload!, 'base64').toString());
    expect((JSON.parse(down.join('')) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(answer);
    const end = events.find((e) => e.type === 'exchange.end')!;
    expect(end.request_body?.not_kept).toBeUndefined();
    expect(end.response_body?.not_kept).toBeUndefined();
  });

  it('says why a body is absent where the connection keeps none: in the events, `sessions show` and the HAR export', async () => {
    const gw = await gatewayWith({ request_body: 'none', response_body: 'none' });
    const { events, sessionId, auditor } = await recordedCall(gw);
    expect(events.find((e) => e.type === 'exchange.request')!.body).toMatchObject({ capture: 'digest', not_kept: 'record.request_body is none' });
    expect(events.find((e) => e.type === 'exchange.end')!.response_body).toMatchObject({ not_kept: 'record.response_body is none' });
    const shown = (await (await fetch(`${gw.url}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${auditor}` } })).json()) as {
      exchanges: { request_body: { not_kept?: string } | null; response_body: { not_kept?: string } | null }[];
    };
    expect(shown.exchanges[0]).toMatchObject({ request_body: { not_kept: 'record.request_body is none' }, response_body: { not_kept: 'record.response_body is none' } });
    const har = (await (await fetch(`${gw.url}/v1/sessions/${sessionId}/export?format=har`, { headers: { authorization: `Bearer ${auditor}` } })).json()) as {
      log: { entries: { response: { content: { comment?: string } } }[] };
    };
    expect(har.log.entries[0]!.response.content.comment).toBe('body not recorded: record.response_body is none');
  });
});
