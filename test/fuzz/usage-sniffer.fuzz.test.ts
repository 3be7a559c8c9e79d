import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UsageSniffer } from '../../server/recording/usage-sniffer.js';
import { fuzz, fuzzSettings } from './fuzz-settings.js';

/** A line of an OpenAI-style stream, or one that only looks like it: needles where no fact may be read. */
const line = fc.oneof(
  fc.record({ model: fc.constantFrom('m1', 'm2', 'gpt-x'), content: fc.string({ maxLength: 20 }), finish: fc.constantFrom(null, 'stop', 'length') }).map(
    ({ model, content, finish }) => `data: ${JSON.stringify({ model, choices: [{ delta: { content }, finish_reason: finish }] })}`,
  ),
  fc.nat(1000).map((n) => `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: n, completion_tokens: n + 1, total_tokens: 2 * n + 1 } })}`),
  fc.constantFrom(
    'data: {"model":"cut-off',
    'data: {"usage":{"total_tokens":',
    ': "usage":{"total_tokens":99}}',
    'event: {"model":"not-data"}',
    'data-like: {"finish_reason":"forged"}',
    'data: [DONE]',
    'data:{"model":"tight","choices":[]}',
    '',
  ),
  fc.string({ maxLength: 40 }).map((s) => `data: ${s}"model":"${s}`),
);

const stream = fc.record({
  lines: fc.array(line, { maxLength: 30 }),
  crlf: fc.boolean(),
  cuts: fc.array(fc.nat(4000), { maxLength: 8 }),
});

/** The facts read from `bytes` fed in pieces cut at `cuts` (offsets, any order, past the end ignored). */
function sniff(bytes: Buffer, cuts: readonly number[]) {
  const sniffer = new UsageSniffer('text/event-stream');
  let at = 0;
  for (const cut of [...new Set(cuts)].filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b)) {
    sniffer.push(bytes.subarray(at, cut));
    at = cut;
  }
  sniffer.push(bytes.subarray(at));
  return sniffer.result();
}

describe('usage sniffer (fuzz)', () => {
  it('reads the same facts however a stream is cut: whole, in pieces, or a byte at a time', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'usage sniffer: chunking',
      fc.property(stream, ({ lines, crlf, cuts }) => {
        const bytes = Buffer.from(lines.map((l) => `${l}${crlf ? '\r\n' : '\n'}`).join(''));
        const byByte = sniff(bytes, Array.from({ length: bytes.length }, (_, i) => i));
        expect(sniff(bytes, [])).toEqual(byByte);
        expect(sniff(bytes, cuts)).toEqual(byByte);
      }),
    );
  });
});
