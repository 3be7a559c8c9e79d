import { describe, expect, it } from 'vitest';
import { compileProfile } from '../../server/masking/compiled-profile.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { SseMasker } from '../../server/masking/sse-masker.js';
import { openAiChatStream, openAiResponsesStream, parseSse, streamedText, streamedToolArguments } from '../fixtures/masking/sse-streams.js';

function profile(extra: Record<string, unknown> = {}) {
  return compileProfile('p', maskingProfileSchema.parse({ detectors: ['email', 'phone', 'secret'], json_keys: ['password'], ...extra }), {});
}

/** Feeds `sse` in pieces of `size` bytes; returns what each write released and the whole. */
function run(sse: string, size = 7, p = profile()) {
  const masker = new SseMasker(p, new MaskingCounter());
  const bytes = Buffer.from(sse);
  const pieces: string[] = [];
  for (let i = 0; i < bytes.length; i += size) pieces.push(masker.write(bytes.subarray(i, i + size)));
  pieces.push(masker.end());
  return { pieces, out: pieces.join('') };
}

describe('SSE masking', () => {
  it('passes a stream without PII byte for byte, whatever the byte splits (multi-byte characters too)', () => {
    const sse = openAiChatStream(['Grüße ', 'aus ', 'Köln — ', 'bis bald 👋']);
    for (const size of [1, 2, 3, 5, 64]) expect(run(sse, size).out).toBe(sse);
  });

  it('keeps ids, event names, comments, retry, CRLF framing and [DONE]', () => {
    const sse =
      ': keep-alive\r\nretry: 1000\r\n\r\n' +
      'id: 7\r\nevent: chunk\r\ndata: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"mail bob@example.com"},"finish_reason":null}]}\r\n\r\n' +
      'id: 8\r\ndata: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" ok"},"finish_reason":"stop"}]}\r\n\r\n' +
      'data: [DONE]\r\n\r\n';
    const { out } = run(sse, 5);
    expect(out.startsWith(': keep-alive\r\nretry: 1000\r\n\r\nid: 7\r\nevent: chunk\r\ndata: ')).toBe(true);
    expect(out.endsWith('data: [DONE]\r\n\r\n')).toBe(true);
    expect(out).not.toMatch(/(?<!\r)\n/);
    const events = parseSse(out);
    expect(events.map((e) => e.id)).toEqual(['7', '8', undefined]);
    expect(streamedText(out)).toBe('mail [EMAIL] ok');
  });

  it('emits each delta as it arrives, holding back only a tail that could begin a match', () => {
    const sse = openAiChatStream(['The answer is yes. ', 'Write to ', 'bob', '@example.com', ' today.']);
    const { pieces } = run(sse, 1_000_000);
    const masker = new SseMasker(profile(), new MaskingCounter());
    const released = sse.split(/(?<=\n\n)/).map((ev) => streamedText(masker.write(Buffer.from(ev))));
    // Whole sentences at once; "bob" held (it may begin an address), "bob@example.com" too (".uk" may
    // follow); the address leaves masked with the next delta, whose trailing word is held in turn.
    expect(released.slice(1, 6)).toEqual(['The answer is yes. ', 'Write to ', '', '', '[EMAIL] ']);
    expect(streamedText(pieces.join(''))).toBe('The answer is yes. Write to [EMAIL] today.');
  });

  it('masks streamed tool-call arguments, json_keys included, split anywhere', () => {
    const args = '{"to":"bob@example.com","password":"hunter2","note":"hi"}';
    for (let i = 1; i < args.length; i++) {
      const { out } = run(openAiChatStream([], { toolArgs: [args.slice(0, i), args.slice(i)] }), 1_000_000);
      expect(JSON.parse(streamedToolArguments(out))).toEqual({ to: '[EMAIL]', password: '[PASSWORD]', note: 'hi' });
    }
  });

  it('keeps OpenAI Responses sequence numbers strictly increasing when a flush is inserted', () => {
    const { out } = run(openAiResponsesStream(['Reach me at bob@exa', 'mple.com']), 1_000_000);
    const events = parseSse(out).map((e) => JSON.parse(e.data) as { type: string; sequence_number: number; text?: string });
    const seqs = events.map((e) => e.sequence_number);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(streamedText(out)).toBe('Reach me at [EMAIL]');
    expect(events.find((e) => e.type === 'response.output_text.done')?.text).toBe('Reach me at [EMAIL]');
    expect(out).not.toContain('bob@');
  });

  it('masks an event of unknown shape as generic JSON', () => {
    const sse = 'data: {"kind":"mystery","payload":{"text":"mail bob@example.com"}}\n\n';
    expect(run(sse).out).toBe('data: {"kind":"mystery","payload":{"text":"mail [EMAIL]"}}\n\n');
    expect(run('data: plain text from bob@example.com\n\n').out).toBe('data: plain text from [EMAIL]\n\n');
  });

  it('refuses a stream with an unknown event shape under unknown_stream: block', () => {
    const sse = openAiChatStream(['hello']) + 'data: {"kind":"mystery"}\n\n';
    expect(() => run(sse, 1_000_000, profile({ unknown_stream: 'block' }))).toThrow(
      expect.objectContaining({ code: 'ERR_MASKING_BLOCKED', message: expect.stringMatching(/unknown_stream: block/) }),
    );
    expect(run(openAiChatStream(['hello bob@example.com']), 3, profile({ unknown_stream: 'block' })).out).not.toContain('bob@');
  });

  it('refuses an SSE event larger than max_json_body', () => {
    const p = profile({ max_json_body: 1024 });
    expect(() => run(`data: ${'x'.repeat(4096)}`, 512, p)).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
  });

  it('flushes held text when the stream ends without [DONE]', () => {
    const sse = 'data: {"object":"chat.completion.chunk","id":"c","choices":[{"index":0,"delta":{"content":"bye bob"},"finish_reason":null}]}\n\n';
    expect(streamedText(run(sse).out)).toBe('bye bob');
  });
});

describe('SSE masking of events that repeat the previous frame', () => {
  const frame = (model: string, content: string) =>
    `{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"${model}","choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"finish_reason":null}]}`;
  const stream = (...datas: string[]) => datas.map((d) => `data: ${d}\n\n`).join('') + 'data: [DONE]\n\n';

  it('masks PII outside the delta of an event that otherwise repeats the frame', () => {
    const { out } = run(stream(frame('m', 'Hello. '), frame('bob@example.com', 'Again. '), frame('m', 'Done. ')), 1_000_000);
    expect(out).not.toContain('bob@example.com');
    expect(parseSse(out).filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data).model)).toEqual(['m', '[EMAIL]', 'm']);
    expect(streamedText(out)).toBe('Hello. Again. Done. ');
  });

  it('masks fields smuggled between the delta and the rest of the frame', () => {
    const first = frame('m', 'Hello. ');
    const smuggled = first.replace('"Hello. "}', '"Hi. ","refusal":"call +1 415 555 0134","x":"y"}');
    expect(smuggled).not.toBe(first);
    const { out } = run(stream(first, smuggled, frame('m', 'Bye. ')), 1_000_000);
    expect(out).not.toContain('415 555 0134');
    expect(streamedText(out)).toBe('Hello. Hi. Bye. ');
  });

  it('frames events whose line ends change from LF to CR or CRLF mid-stream, split anywhere', () => {
    const ev = (content: string, eol: string) => `data: ${frame('m', content)}${eol}${eol}`;
    const sse = ev('Hello. ', '\n') + ev('mail bob@', '\n') + ev('example.com ', '\r') + ev('now. ', '\r\n') + 'data: [DONE]\r\n\r\n';
    for (const size of [1, 2, 3, 7, 1_000_000]) {
      const { out } = run(sse, size);
      expect(out.endsWith('data: [DONE]\r\n\r\n')).toBe(true);
      expect(streamedText(out)).toBe('Hello. mail [EMAIL] now. ');
    }
  });

  it('masks deltas split across events whatever the JSON spacing or escaping', () => {
    const spaced = (content: string) => `{"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": ${JSON.stringify(content)}}}]}`;
    const escaped = (content: string) => frame('m', content).replace(/@/g, '\\u0040');
    for (const shape of [spaced, escaped]) {
      const { out } = run(stream(shape('mail bob'), shape('@exam'), shape('ple.com now. ')), 1_000_000);
      expect(streamedText(out)).toBe('mail [EMAIL] now. ');
    }
  });
});

describe('firstTokenTiming', () => {
  it('finds the chunk that releases the first token: the same one, unless the hold-back keeps it', async () => {
    const { firstTokenTiming } = await import('../../server/masking/first-token.js');
    const chunks = (deltas: string[]) => openAiChatStream(deltas).split(/(?<=\n\n)/).map((e) => Buffer.from(e));
    const plain = firstTokenTiming(profile(), chunks(['Hello there. ', 'How are you?']))!;
    expect([plain.firstIn, plain.firstOut]).toEqual([1, 1]);
    const held = firstTokenTiming(profile(), chunks(['Hello', ' there.']))!;
    expect([held.firstIn, held.firstOut]).toEqual([1, 2]);
    expect(held.writeNs).toHaveLength(5);
  });
});
