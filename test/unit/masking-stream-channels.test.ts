/**
 * Streams rebuilt channel by channel, whatever their shape: what a client assembles from the masked
 * events (after a JSON decode of each) holds no value, however the upstream split it.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { describe, expect, it } from 'vitest';
import { compileProfile } from '../../server/masking/compiled-profile.js';
import { FragmentChannel } from '../../server/masking/fragment-channel.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { NdjsonMasker } from '../../server/masking/ndjson-masker.js';
import { maskingProfileSchema, maskingSettingsSchema } from '../../server/masking/profile-schema.js';
import { createBodyMasker } from '../../server/masking/response-masking.js';
import { SseFramer } from '../../server/masking/sse-framer.js';
import { SseMasker } from '../../server/masking/sse-masker.js';

const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';
const EMAIL_TOKENS = ['jane', '.doe', '@exam', 'ple.com'];
const CARD_TOKENS = ['411', '1 11', '11 1', '111 ', '1111'];

function profile(extra: Record<string, unknown> = {}, settings: Record<string, unknown> = {}) {
  return compileProfile(
    'p',
    maskingProfileSchema.parse({ detectors: ['email', 'phone', 'credit_card', 'secret'], json_keys: ['password'], ...extra }),
    maskingSettingsSchema.parse(settings),
  );
}

type Masker = { write(chunk: Buffer): string | Buffer; end(): string | Buffer };

/** Feeds `body` (one write per string) and returns everything the masker released. */
function run(masker: Masker, parts: readonly string[]): string {
  let out = '';
  for (const p of parts) out += masker.write(Buffer.from(p)).toString();
  return out + masker.end().toString();
}

function sse(parts: readonly string[], p = profile()): string {
  return run(new SseMasker(p, new MaskingCounter()), parts);
}

function ndjson(parts: readonly string[], p = profile()): string {
  return run(new NdjsonMasker(p, new MaskingCounter()), parts);
}

/** Events as the eventsource-parser (an independent client-side parser) reads them. */
function events(body: string): EventSourceMessage[] {
  const out: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (e) => out.push(e), onComment: (c) => out.push({ event: ':comment', data: c, id: undefined }) });
  parser.feed(body);
  return out;
}

/** The JSON of each event's data ([DONE] and comments left out). */
function decoded(body: string): any[] {
  return events(body)
    .filter((e) => e.event !== ':comment' && e.data !== '[DONE]')
    .map((e) => JSON.parse(e.data));
}

/** Words of the streams' own framing that share 4 characters with a value ("completion" with "example"). */
const SCAFFOLD = ' text_completion chat.completion.chunk response.completed ';

/** Fails when `text` holds the value, or any 4 characters of it that are not also in `allowed`. */
function expectNoPart(text: string, value: string, allowed = ''): void {
  expect(text).not.toContain(value);
  for (let i = 0; i + 4 <= value.length; i++) {
    const part = value.slice(i, i + 4);
    if (!(allowed + SCAFFOLD).includes(part) && !/^\s|\s$/.test(part)) expect(text, `holds "${part}" of ${value}`).not.toContain(part);
  }
}

const data = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
const chunk = (choice: Record<string, unknown>) =>
  data({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, finish_reason: null, ...choice }] });
const token = (t: string) => ({ token: t, logprob: -0.1, bytes: [...Buffer.from(t)], top_logprobs: [{ token: t, logprob: -0.1, bytes: [...Buffer.from(t)] }] });

describe('FragmentChannel', () => {
  it('shares the masked text out so the fragments spell it and none holds part of a value, at every split', () => {
    const p = profile();
    const text = `Mail ${EMAIL} or pay with ${CARD} today.`;
    const expected = p.text.mask(text, new MaskingCounter());
    expect(expected).toBe('Mail [EMAIL] or pay with [CREDIT_CARD] today.');
    for (let i = 1; i < text.length; i++) {
      for (const j of [i + 1, i + 3, i + 7]) {
        if (j >= text.length) continue;
        const channel = new FragmentChannel<number>(p.text, new MaskingCounter());
        const pieces = [text.slice(0, i), text.slice(i, j), text.slice(j)];
        const outs: string[] = [];
        pieces.forEach((t, k) => channel.push([{ text: t, ref: k }]).forEach((d) => (outs[d.ref] = d.out)));
        channel.end().forEach((d) => (outs[d.ref] = d.out));
        expect(outs.join('')).toBe(expected);
        for (const o of outs) {
          expectNoPart(o, EMAIL, 'Mail ');
          expectNoPart(o, CARD);
        }
      }
    }
  });
});

describe('logprobs of streamed answers', () => {
  const stream = (lists: { content: string; tokens: string[] }[]) =>
    [chunk({ delta: { role: 'assistant', content: '' }, logprobs: null })]
      .concat(lists.map((l) => chunk({ delta: { content: l.content }, logprobs: { content: l.tokens.map(token), refusal: null } })))
      .concat([chunk({ delta: {}, logprobs: null, finish_reason: 'stop' }), 'data: [DONE]\n\n']);

  it('masks chat logprobs tokens as the text they spell: no token, alternative or bytes carry part of a value', () => {
    const pieces = ['Write to ', ...EMAIL_TOKENS, ' or pay ', ...CARD_TOKENS, ' now.'];
    const out = sse(stream(pieces.map((t) => ({ content: t, tokens: [t] }))));
    const chunks = decoded(out);
    const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    const tokens = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
    expect(content).toBe('Write to [EMAIL] or pay [CREDIT_CARD] now.');
    expect(tokens.map((t: any) => t.token).join('')).toBe(content);
    for (const t of tokens) {
      expect(Buffer.from(t.bytes).toString()).toBe(t.token);
      for (const alt of t.top_logprobs) expect(Buffer.from(alt.bytes).toString()).toBe(alt.token);
    }
    expectNoPart(out, EMAIL, 'Write to ');
    expectNoPart(out, CARD);
  });

  it('drops alternatives that would complete a value the chosen tokens began', () => {
    const alt = { token: 'ple.com', logprob: -3 };
    const out = sse([
      chunk({ delta: { content: 'Write to jane.doe@exam' }, logprobs: { content: [token('Write to jane.doe@exam')] } }),
      chunk({ delta: { content: 'ple.org' }, logprobs: { content: [{ ...token('ple.org'), top_logprobs: [{ token: 'ple.org', logprob: -0.1 }, alt] }] } }),
      chunk({ delta: {}, finish_reason: 'stop' }),
    ]);
    expectNoPart(out, EMAIL, 'Write to ');
    expect(out).not.toContain('jane.doe');
  });

  it('masks legacy completion logprobs (tokens, top_logprobs keyed by token) and Responses delta logprobs', () => {
    const completion = EMAIL_TOKENS.map((t) =>
      data({ id: 'cmpl-1', object: 'text_completion', choices: [{ index: 0, text: t, logprobs: { tokens: [t], token_logprobs: [-0.1], top_logprobs: [{ [t]: -0.1 }], text_offset: [0] }, finish_reason: null }] }),
    );
    const out = sse([...completion, data({ id: 'cmpl-1', object: 'text_completion', choices: [{ index: 0, text: '', finish_reason: 'stop' }] })]);
    const chunks = decoded(out);
    expect(chunks.map((c) => c.choices[0].text).join('')).toBe('[EMAIL]');
    expect(chunks.flatMap((c) => c.choices[0].logprobs?.tokens ?? []).join('')).toBe('[EMAIL]');
    expectNoPart(out, EMAIL);

    let seq = 0;
    const ev = (o: Record<string, unknown>) => `event: ${String(o.type)}\ndata: ${JSON.stringify({ ...o, sequence_number: seq++ })}\n\n`;
    const responses = [
      ...EMAIL_TOKENS.map((t) => ev({ type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: t, logprobs: [token(t)] })),
      ev({ type: 'response.output_text.done', item_id: 'msg_1', output_index: 0, content_index: 0, text: EMAIL, logprobs: EMAIL_TOKENS.map(token) }),
      ev({ type: 'response.completed', response: { output: [{ type: 'message', content: [{ type: 'output_text', text: EMAIL, logprobs: EMAIL_TOKENS.map(token) }] }] } }),
    ];
    const rOut = sse(responses);
    const deltas = decoded(rOut).filter((e) => e.type === 'response.output_text.delta');
    expect(deltas.map((d) => d.delta).join('')).toBe('[EMAIL]');
    expect(deltas.flatMap((d) => d.logprobs ?? []).map((t: any) => t.token).join('')).toBe('[EMAIL]');
    expectNoPart(rOut, EMAIL);
  });

  it('removes logprobs under logprobs: strip, set on the profile or for all in masking.logprobs', () => {
    const body = stream(EMAIL_TOKENS.map((t) => ({ content: t, tokens: [t] })));
    for (const p of [profile({ logprobs: 'strip' }), profile({}, { logprobs: 'strip' })]) {
      const out = sse(body, p);
      expect(decoded(out).every((c) => c.choices[0]?.logprobs === null || c.choices[0]?.logprobs === undefined)).toBe(true);
      expect(decoded(out).map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('[EMAIL]');
      expectNoPart(out, EMAIL);
    }
    // A profile's own setting wins over the top-level one.
    const kept = sse(body, profile({ logprobs: 'mask' }, { logprobs: 'strip' }));
    expect(decoded(kept).flatMap((c) => c.choices[0]?.logprobs?.content ?? []).map((t: any) => t.token).join('')).toBe('[EMAIL]');
  });

  it('masks the logprobs of a whole JSON answer, chat and legacy, and strips them when asked', () => {
    const answer = {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: `Mail ${EMAIL}` }, logprobs: { content: ['Mail ', ...EMAIL_TOKENS].map(token), refusal: null }, finish_reason: 'stop' }],
      prompt_logprobs: [null, { '1': { logprob: -1, rank: 1, decoded_token: 'jane' } }],
    };
    const json = (p = profile()) => JSON.parse(run(createBodyMasker('json', p, new MaskingCounter()), [JSON.stringify(answer)]));
    const masked = json();
    expect(masked.choices[0].message.content).toBe('Mail [EMAIL]');
    expect(masked.choices[0].logprobs.content.map((t: any) => t.token).join('')).toBe('Mail [EMAIL]');
    expect(masked.prompt_logprobs).toBeNull();
    expectNoPart(JSON.stringify(masked), EMAIL, 'Mail ');
    const stripped = json(profile({ logprobs: 'strip' }));
    expect(stripped.choices[0].logprobs).toBeNull();
    expect(stripped.choices[0].message.content).toBe('Mail [EMAIL]');

    const legacy = { object: 'text_completion', choices: [{ index: 0, text: EMAIL, logprobs: { tokens: EMAIL_TOKENS, token_logprobs: [-1, -1, -1, -1], top_logprobs: EMAIL_TOKENS.map((t) => ({ [t]: -1 })), text_offset: [0, 4, 8, 13] } }] };
    const l = JSON.parse(run(createBodyMasker('json', profile(), new MaskingCounter()), [JSON.stringify(legacy)]));
    expect(l.choices[0].logprobs.tokens.join('')).toBe('[EMAIL]');
    expectNoPart(JSON.stringify(l), EMAIL);
  });
});

describe('stream shapes', () => {
  it('masks legacy function_call arguments and audio transcripts split across chat deltas', () => {
    const args = `{"to":"${EMAIL}","card":"${CARD}"}`;
    const cut = [0, 9, 14, 21, 30, 38, args.length];
    const fc = cut.slice(1).map((end, i) => chunk({ delta: { function_call: i === 0 ? { name: 'send', arguments: args.slice(cut[i], end) } : { arguments: args.slice(cut[i], end) } } }));
    const audio = EMAIL_TOKENS.map((t) => chunk({ delta: { audio: { id: 'audio_1', transcript: t } } }));
    const out = sse([...fc, ...audio, chunk({ delta: {}, finish_reason: 'stop' }), 'data: [DONE]\n\n']);
    const chunks = decoded(out);
    expect(JSON.parse(chunks.map((c) => c.choices[0]?.delta?.function_call?.arguments ?? '').join(''))).toEqual({ to: '[EMAIL]', card: '[CREDIT_CARD]' });
    expect(chunks.map((c) => c.choices[0]?.delta?.audio?.transcript ?? '').join('')).toBe('[EMAIL]');
    expect(chunks.find((c) => c.choices[0]?.delta?.function_call?.name)?.choices[0].delta.function_call.name).toBe('send');
    expectNoPart(out, EMAIL);
    expectNoPart(out, CARD);
  });

  it('masks an unknown shape (TGI) per JSON path, holding each event only until its strings are decided', () => {
    const tgi = (text: string, i: number) => data({ index: i, token: { id: i, text, logprob: -0.1, special: false }, generated_text: null, details: null });
    const body = ['Hello ', ...EMAIL_TOKENS, ' bye'].map(tgi);
    const out = sse(body);
    const chunks = decoded(out);
    expect(chunks).toHaveLength(body.length);
    expect(chunks.map((c) => c.token.text).join('')).toBe('Hello [EMAIL] bye');
    expect(chunks.map((c) => c.token.id)).toEqual(body.map((_, i) => i));
    expectNoPart(out, EMAIL);
    // Held only while a value may be under way: a plain word leaves with the next event.
    const masker = new SseMasker(profile(), new MaskingCounter());
    expect(masker.write(Buffer.from(tgi('Hello there. ', 0)))).not.toBe('');
  });

  it('refuses an unknown shape under unknown_stream: block, as before', () => {
    expect(() => sse([data({ token: { text: 'hi' } })], profile({ unknown_stream: 'block' }))).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
  });

  it('masks plain-text data events as one channel', () => {
    const out = sse(['data: Write to jane\n\n', 'data: .doe@exam\n\n', 'data: ple.com now\n\n']);
    expect(events(out).map((e) => e.data).join('')).toBe('Write to [EMAIL] now');
    expectNoPart(out, EMAIL, 'Write to ');
    // Data that happens to parse as a JSON number is still text to the channel: "1" ends the card.
    const card = sse(['data: pay 4111 1\n\n', 'data: 111 11\n\n', 'data: 11 111\n\n', 'data: 1\n\n', 'data: [DONE]\n\n']);
    expect(events(card).map((e) => e.data).join('')).toBe('pay [CREDIT_CARD][DONE]');
  });

  it('masks event:, id: and comment lines and any line no client reads', () => {
    const out = sse([`: note for ${EMAIL}\nid: ${CARD}\nevent: ${EMAIL}\n${EMAIL}\ndata: {"type":"x"}\n\n`, 'data: [DONE]\n\n']);
    expectNoPart(out, EMAIL);
    expectNoPart(out, CARD);
    const first = events(out).filter((e) => e.event !== ':comment')[0]!;
    expect(first.id).toBe('[CREDIT_CARD]');
    expect(first.event).toBe('[EMAIL]');
  });

  it('reads the first event past a UTF-8 BOM, as clients do, and keeps the BOM', () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const body = Buffer.concat([bom, Buffer.from(chunk({ delta: { content: `Mail ${EMAIL}` } }) + 'data: [DONE]\n\n')]);
    for (const size of [1, 2, 4, body.length]) {
      const masker = new SseMasker(profile(), new MaskingCounter());
      let out = Buffer.alloc(0);
      for (let i = 0; i < body.length; i += size) out = Buffer.concat([out, Buffer.from(masker.write(body.subarray(i, i + size)))]);
      out = Buffer.concat([out, Buffer.from(masker.end())]);
      expect(out.subarray(0, 3)).toEqual(bom);
      expectNoPart(out.toString(), EMAIL, 'Mail ');
      expect(decoded(out.toString('utf8').slice(1)).map((c) => c.choices[0].delta.content ?? '').join('')).toBe('Mail [EMAIL]');
    }
  });

  it('masks a JSON body sent as text/event-stream as JSON', () => {
    const body = JSON.stringify({ error: { message: `No account for ${EMAIL}`, code: 'not_found' } });
    for (const parts of [[body], [' \n', body.slice(0, 5), body.slice(5)]]) {
      const out = sse(parts);
      expect(JSON.parse(out).error.message).toBe('No account for [EMAIL]');
    }
  });

  it('masks Ollama NDJSON (/api/chat, /api/generate) split across lines, and unknown NDJSON per path', () => {
    const line = (o: unknown) => `${JSON.stringify(o)}\n`;
    const chat = [...EMAIL_TOKENS, ' ok'].map((t) => line({ model: 'llama3', created_at: '2024-01-01T00:00:00Z', message: { role: 'assistant', content: t }, done: false }));
    chat.push(line({ model: 'llama3', created_at: '2024-01-01T00:00:01Z', message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop' }));
    const out = ndjson(chat);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.message.content).join('')).toBe('[EMAIL] ok');
    expect(lines.at(-1).done).toBe(true);
    expectNoPart(out, EMAIL);

    const generate = EMAIL_TOKENS.map((t) => line({ model: 'llama3', created_at: 't', response: t, done: false }));
    generate.push(line({ model: 'llama3', created_at: 't', response: '', done: true, context: [1, 2, 3] }));
    const g = ndjson(generate.map((l) => l.replace('\n', '\r\n')));
    expect(g.trim().split('\r\n').map((l) => JSON.parse(l).response).join('')).toBe('[EMAIL]');
    expectNoPart(g, EMAIL);

    const other = ndjson(EMAIL_TOKENS.map((t) => line({ output: { text: t } })));
    expect(other.trim().split('\n').map((l) => JSON.parse(l).output.text).join('')).toBe('[EMAIL]');
  });
});

describe('framing cost and bounds', () => {
  it('frames a long line fed in small pieces, and refuses one past max_line with ERR_MASKING_BLOCKED', () => {
    const framer = new SseFramer({ maxEvent: 16 * 1024 * 1024, maxLine: 8 * 1024 * 1024 });
    const line = `data: ${'x'.repeat(4 * 1024 * 1024)}`;
    let got = 0;
    for (let i = 0; i < line.length; i += 64) got += framer.push(line.slice(i, i + 64)).length;
    got += framer.push('\n\n').length;
    expect(got).toBe(1);

    const p = profile({}, { max_line: 64 * 1024 });
    const long = `data: ${'a'.repeat(70 * 1024)}`;
    for (const masker of [new SseMasker(p, new MaskingCounter()), new NdjsonMasker(p, new MaskingCounter())]) {
      expect(() => {
        for (let i = 0; i < long.length; i += 1000) masker.write(Buffer.from(long.slice(i, i + 1000)));
      }).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED', message: expect.stringMatching(/max_line/) }));
    }
  });

  it('frames LF, CRLF and lone CR lines split anywhere the same way', () => {
    const body = 'data: a\r\n\r\ndata: b\r\rdata: c\n\n';
    for (let i = 1; i < body.length; i++) {
      const framer = new SseFramer({ maxEvent: 1024, maxLine: 1024 });
      const got = [...framer.push(body.slice(0, i)), ...framer.push(body.slice(i))];
      const last = framer.end();
      if (last !== null) got.push(last);
      expect(got.map((e) => e.data)).toEqual(['a', 'b', 'c']);
      expect(got.map((e) => e.raw).join('')).toBe(body);
    }
  });
});
