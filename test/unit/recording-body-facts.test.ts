import { describe, expect, it } from 'vitest';
import { recordableHeaders, recordableTarget } from '../../server/recording/credential-redaction.js';
import { UsageSniffer } from '../../server/recording/usage-sniffer.js';

function feed(sniffer: UsageSniffer, text: string, pieces: number[]): void {
  const bytes = Buffer.from(text);
  let at = 0;
  for (const n of pieces) {
    sniffer.push(bytes.subarray(at, at + n));
    at += n;
  }
  sniffer.push(bytes.subarray(at));
}

describe('usage sniffer', () => {
  it('reads model, usage and finish reason from a JSON answer split anywhere', () => {
    const s = new UsageSniffer('application/json; charset=utf-8');
    feed(s, JSON.stringify({ model: 'gpt-x', choices: [{ finish_reason: 'length' }], usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 } }), [1, 7, 13]);
    expect(s.result()).toEqual({ model: 'gpt-x', finish_reason: 'length', usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 } });
  });

  it('reads them from an SSE stream with events split across chunks, usage in the last event', () => {
    const event = (o: object) => `data: ${JSON.stringify(o)}\n\n`;
    const text =
      event({ model: 'm1', choices: [{ delta: { content: 'a' }, finish_reason: null }] }) +
      event({ model: 'm1', choices: [{ delta: { content: 'b' }, finish_reason: null }] }) +
      event({ model: 'm1', choices: [{ delta: {}, finish_reason: 'stop' }] }) +
      event({ model: 'm1', choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } }) +
      'data: [DONE]\n\n';
    const s = new UsageSniffer('text/event-stream');
    feed(s, text, [5, 60, 3, 90]);
    expect(s.result()).toEqual({ model: 'm1', finish_reason: 'stop', usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } });
  });

  it('reads the same facts from an SSE stream cut at every offset, blank lines and `data:` prefixes included', () => {
    const event = (o: object) => `data: ${JSON.stringify(o)}\n\n`;
    const text =
      ': keep-alive\n\n' +
      event({ model: 'm2', choices: [{ delta: { content: 'x' }, finish_reason: null }] }) +
      'event: note\ndata-like: {"usage":{"total_tokens":99}}\n\n' +
      event({ model: 'other', choices: [{ delta: {}, finish_reason: 'length' }] }) +
      event({ choices: [], usage: { prompt_tokens: 4, completion_tokens: 5, total_tokens: 9 } }) +
      'data: [DONE]\n\n';
    const expected = { model: 'm2', finish_reason: 'length', usage: { prompt_tokens: 4, completion_tokens: 5, total_tokens: 9 } };
    for (let cut = 0; cut <= text.length; cut++) {
      const s = new UsageSniffer('text/event-stream');
      feed(s, text, [cut]);
      expect(s.result(), `cut at ${cut}`).toEqual(expected);
    }
    const byByte = new UsageSniffer('text/event-stream');
    feed(byByte, text, Array.from({ length: text.length }, () => 1));
    expect(byByte.result()).toEqual(expected);
  });

  it('reads a burst of events in one chunk as it reads them one by one: a model line that does not parse hides no later one', () => {
    const event = (o: object) => `data: ${JSON.stringify(o)}\n\n`;
    const lines = [
      'data: {"model":"cut-off\n\n',
      ...Array.from({ length: 50 }, (_, n) => event({ model: n === 0 ? 'm3' : 'later', choices: [{ delta: { content: `w${n}` }, finish_reason: null }] })),
      event({ choices: [{ delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }),
      event({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 50, total_tokens: 57 } }),
      'data: [DONE]\n\n',
    ];
    const burst = new UsageSniffer('text/event-stream');
    burst.push(Buffer.from(lines.join('')));
    const oneByOne = new UsageSniffer('text/event-stream');
    for (const line of lines) oneByOne.push(Buffer.from(line));
    const expected = { model: 'm3', finish_reason: 'stop', usage: { prompt_tokens: 7, completion_tokens: 50, total_tokens: 57 } };
    expect(burst.result()).toEqual(expected);
    expect(oneByOne.result()).toEqual(expected);
  });

  it('gives up on a JSON answer beyond its bound instead of holding it', () => {
    const s = new UsageSniffer('application/json');
    s.push(Buffer.from('{"model":"big","pad":"'));
    s.push(Buffer.alloc(2 * 1024 * 1024, 0x61));
    s.push(Buffer.from('"}'));
    expect(s.result()).toEqual({});
  });

  it('ignores bodies of other types', () => {
    const s = new UsageSniffer('text/plain');
    s.push(Buffer.from('{"model":"x"}'));
    expect(s.result()).toEqual({});
  });
});

describe('credential removal', () => {
  it('keeps header names and replaces credential values', () => {
    expect(recordableHeaders({ authorization: 'Bearer abc', cookie: 'a=1', 'x-api-key': 'k', 'set-cookie': ['a', 'b'], 'content-type': 'application/json' })).toEqual({
      authorization: '[removed]',
      cookie: '[removed]',
      'x-api-key': '[removed]',
      'set-cookie': ['[removed]', '[removed]'],
      'content-type': 'application/json',
    });
  });

  it('splits the query off and removes credential-like parameters', () => {
    expect(recordableTarget('/v1/models')).toEqual({ path: '/v1/models' });
    expect(recordableTarget('/v1/x?api_key=s3cret&limit=5&access_token=t&flag')).toEqual({ path: '/v1/x', query: 'api_key=[removed]&limit=5&access_token=[removed]&flag' });
  });
});
