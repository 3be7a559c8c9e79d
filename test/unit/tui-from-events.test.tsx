import { describe, expect, it } from 'vitest';
import { jsonAnswerText, SseTextExtractor } from '../../cli/tui/answer-text.js';
import { fromEvents } from '../../cli/tui/from-events.js';
import type { RecordedEvent } from '../../cli/tui/recorded-event.js';
import { fixtureEvents, fixtureSession } from './tui-fixtures.js';

describe('fromEvents on the recorded fixtures', () => {
  it('a streamed chat completion: answer text per chunk at offsets from the exchange start, and its waits', () => {
    const s = fixtureSession('http-streamed');
    expect(s.summary).toMatchObject({
      user: { sub: 'u-alice', email: 'alice@example.com' },
      connection: 'llm',
      connectionType: 'http',
      requests: 1,
      models: ['gpt-5-mini-2025-08-07'],
      tokens: { in: 41, out: 52 },
      denied: 0,
      held: 1,
      masked: 0,
      status: 'closed',
    });
    const x = s.exchanges[0]!;
    expect(x).toMatchObject({ method: 'POST', path: '/v1/chat/completions', status: 200, streamed: true, finishReason: 'stop' });
    expect(x.review).toEqual({ id: 'rev_5d1e', outcome: 'approved', by: 'bob@example.com' });
    // 31 recorded chunks: a role-only one, 28 carrying the 27 text deltas (one event split in two), finish and usage.
    const recordedChunks = fixtureEvents('http-streamed').filter((e) => e.type === 'exchange.chunk');
    expect(recordedChunks).toHaveLength(31);
    expect(x.chunks).toHaveLength(27);
    expect(x.chunks.map((c) => c.text).join('')).toBe(
      'Sure. The nightly batch job timed out because the model server was saturated at 02:00. We raised the pool size to 16, added a retry with backoff, and moved the job to 03:30 so it no longer overlaps the index rebuild.',
    );
    // The exchange starts at its first event (the policy decision, t=38); the first text chunk came at t=4240.
    expect(x.chunks[0]).toEqual({ t: 4240 - 38, text: 'Sure. ' });
    expect(x.waits).toEqual([
      { from: 40 - 38, to: 3040 - 38, kind: 'review' },
      { from: 3040 - 38, to: 4240 - 38, kind: 'first_token' },
    ]);
  });

  it('a non-streamed answer is one chunk; a denied request counts as denied, not as a model used', () => {
    const s = fixtureSession('http-plain');
    expect(s.summary).toMatchObject({ requests: 2, denied: 1, held: 0, models: ['gpt-4o-mini-2024-07-18'], tokens: { in: 14, out: 8 } });
    const [answer, denied] = s.exchanges;
    expect(answer?.streamed).toBe(false);
    expect(answer?.chunks).toEqual([{ t: 656 - 12, text: 'Paris is the capital of France.' }]);
    expect(answer?.response.body.kind).toBe('json');
    expect(denied).toMatchObject({ status: 403, decision: { action: 'deny', policy: 'no-embeddings-from-notebooks' }, error: { code: 'ERR_POLICY_DENIED' } });
  });

  it('masked bodies keep their placeholders and the masking counts add up', () => {
    const s = fixtureSession('http-masked');
    expect(s.summary.masked).toBe(6);
    const x = s.exchanges[0]!;
    expect(x.request.recorded).toBe('masked');
    expect(x.response.recorded).toBe('masked');
    expect(JSON.stringify(x.request.body)).toContain('<PHONE:3f9a1c>');
    expect(x.masking).toContainEqual({ entity: 'EMAIL', rule: 'email', count: 2 });
  });

  it('a tcp session becomes a timeline with sizes and printable previews (base64 decoded)', () => {
    const s = fixtureSession('tcp-redis');
    expect(s.summary.connectionType).toBe('tcp');
    expect(s.timeline).toHaveLength(9);
    expect(s.timeline[0]).toEqual({ t: 10, direction: 'in', bytes: 14, preview: '*1↵$4↵PING↵' });
    expect(s.timeline[5]).toEqual({ t: 2262, direction: 'out', bytes: 8, preview: '$2↵42↵' });
    expect(s.timeline[6]?.preview).toBe('···DUMP blob');
  });

  it('sorts by seq, skips event types it does not know, and reports an unfinished session as open', () => {
    const shuffled: RecordedEvent[] = fixtureEvents('http-plain')
      .filter((e) => e.type !== 'session.end')
      .reverse();
    shuffled.push({ seq: 999, t: 1, type: 'grant.used', exchange: 'x' } as unknown as RecordedEvent);
    const s = fromEvents(shuffled);
    expect(s.summary.status).toBe('open');
    expect(s.exchanges.map((x) => x.path)).toEqual(['/v1/chat/completions', '/v1/embeddings']);
  });
});

describe('answer text extraction', () => {
  it('OpenAI chat.completion.chunk deltas, across an event split between chunks', () => {
    const x = new SseTextExtractor();
    const ev = (content: string) => `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`;
    const two = ev('world');
    expect(x.push(`${ev('Hello')}${ev(', ')}`)).toBe('Hello, ');
    expect(x.push(two.slice(0, 25))).toBe('');
    expect(x.push(`${two.slice(25)}data: [DONE]\n\n`)).toBe('world');
  });

  it('Anthropic content_block_delta text deltas; other events carry no text', () => {
    const x = new SseTextExtractor();
    const sse = [
      'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","role":"assistant"}}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bonjour"}}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" !"}}\n\n',
      'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ];
    expect(sse.map((c) => x.push(c))).toEqual(['', 'Bonjour', ' !', '']);
  });

  it('whole JSON answers: OpenAI chat.completion and Anthropic message', () => {
    expect(jsonAnswerText({ choices: [{ message: { role: 'assistant', content: 'Hi' } }] })).toBe('Hi');
    expect(jsonAnswerText({ type: 'message', content: [{ type: 'text', text: 'Hallo' }] })).toBe('Hallo');
    expect(jsonAnswerText({ data: [] })).toBeUndefined();
  });
});

describe('fromEvents on the recorder’s own shape ({fields, payload}, coalesced chunk runs)', () => {
  const sse = (content: string) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`;
  const run = [sse('Hel'), sse('lo'), sse(' there')];
  const recorderEvents = [
    {
      seq: 0,
      t: 0,
      type: 'session.start',
      fields: {
        session: 'ses_r',
        started_at: 1_750_000_000_000,
        user: { sub: 'u1', email: 'u1@example.com', groups: [], issuer: 'https://idp' },
        connection: { name: 'llm', type: 'http' },
        via: 'tunnel',
        client_address: '127.0.0.1',
        record: { request_body: 'masked', response_body: 'masked', raw: false },
      },
    },
    {
      seq: 1,
      t: 5,
      type: 'exchange.request',
      fields: { exchange: 'x1', method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, decision: { action: 'allow', rule: 'default' } },
      payload: Buffer.from('{"model":"m","stream":true}'),
    },
    { seq: 2, t: 50, type: 'exchange.response', fields: { exchange: 'x1', status: 200, headers: { 'content-type': 'text/event-stream' } } },
    // One record holding three chunks that arrived 0, 30 and 75 ms after t; payload base64 as JSON carries it.
    {
      seq: 3,
      t: 400,
      type: 'exchange.chunk',
      fields: { exchange: 'x1', dir: 'down', bytes: run.join('').length, parts: run.map((r, i) => [[0, 30, 75][i], Buffer.byteLength(r)]) },
      payload: Buffer.from(run.join('')).toString('base64'),
    },
    { seq: 4, t: 480, type: 'masking.summary', fields: { exchange: 'x1', findings: [{ entity: 'EMAIL', rule: 'email', count: 1 }] } },
    { seq: 5, t: 481, type: 'exchange.end', fields: { exchange: 'x1', status: 200, complete: true, duration_ms: 476, ttfb_ms: 45, model: 'm-1', usage: { prompt_tokens: 3, completion_tokens: 4 }, bytes_up: 1, bytes_down: 1 } },
    { seq: 6, t: 900, type: 'exchange.error', fields: { exchange: 'x2', code: 'ERR_POLICY_DENIED', message: 'no', after_response_head: false, request: { method: 'GET', path: '/v1/models' } } },
    { seq: 7, t: 1000, type: 'session.end', fields: { reason: 'closed', exchanges: 2 } },
  ];

  it('splits a run back into its chunks at their own offsets and reads bodies from the payload', () => {
    const s = fromEvents(recorderEvents);
    expect(s.summary).toMatchObject({ id: 'ses_r', connection: 'llm', requests: 2, masked: 1, models: ['m-1'], tokens: { in: 3, out: 4 }, status: 'closed' });
    const [x1, x2] = s.exchanges;
    expect(x1?.chunks).toEqual([
      { t: 395, text: 'Hel' },
      { t: 425, text: 'lo' },
      { t: 470, text: ' there' },
    ]);
    expect(x1?.request).toMatchObject({ recorded: 'masked', body: { kind: 'json', value: { model: 'm', stream: true } } });
    expect(x1?.decision).toEqual({ action: 'allow', policy: 'default' });
    expect(x2).toMatchObject({ method: 'GET', path: '/v1/models', error: { code: 'ERR_POLICY_DENIED' } });
  });
});
