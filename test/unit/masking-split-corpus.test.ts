import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileProfile, type CompiledProfile } from '../../server/masking/compiled-profile.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { SseMasker } from '../../server/masking/sse-masker.js';
import { anthropicStream, openAiChatStream, openAiResponsesStream, parseSse, streamedText } from '../fixtures/masking/sse-streams.js';

interface CorpusValue {
  entity: string;
  label: string;
  value: string;
  replacement?: string;
}
const corpus = JSON.parse(readFileSync(new URL('../fixtures/masking/pii-corpus.json', import.meta.url), 'utf8')) as {
  prefix: string;
  suffix: string;
  values: CorpusValue[];
};

const profile: CompiledProfile = compileProfile(
  'pii',
  maskingProfileSchema.parse({
    detectors: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'],
    json_keys: ['password'],
    regex: [{ name: 'account', pattern: 'ACME-[0-9]{6}', replace: '[ACCOUNT]' }],
  }),
  {},
);

type Shape = (deltas: readonly string[]) => string;
const SHAPES: Record<string, Shape> = { openai_chat: openAiChatStream, openai_responses: openAiResponsesStream, anthropic: anthropicStream };

/** Feeds the stream event by event (each upstream event its own write) and returns what each write released. */
function run(sse: string): { pieces: string[]; counter: MaskingCounter } {
  const counter = new MaskingCounter();
  const masker = new SseMasker(profile, counter);
  const pieces: string[] = [];
  for (const ev of sse.split(/(?<=\n\n)/)) pieces.push(masker.write(Buffer.from(ev)));
  pieces.push(masker.end());
  return { pieces, counter };
}

/** Substrings of the value that must not reach the client (those also in the masked text or scaffolding excepted). */
function fragments(value: string, allowedIn: string): string[] {
  const n = Math.min(4, value.length);
  const out = new Set<string>();
  for (let i = 0; i + n <= value.length; i++) {
    const f = value.slice(i, i + n);
    if (!allowedIn.includes(f)) out.add(f);
  }
  return [...out];
}

/**
 * Split points: 2 chunks cut at every offset inside or at the edges of the value; 3 chunks cut at every
 * pair of such offsets. For values longer than 48 characters (a JWT, a PEM key) the pairs are taken
 * every `stride` offsets, always including both edges, to keep the run short.
 */
function splits(text: string, start: number, end: number, parts: 2 | 3): string[][] {
  const out: string[][] = [];
  if (parts === 2) {
    for (let i = start; i <= end; i++) out.push([text.slice(0, i), text.slice(i)]);
    return out;
  }
  const stride = end - start > 48 ? 5 : 1;
  const points: number[] = [];
  for (let i = start; i < end; i += stride) points.push(i);
  points.push(end);
  for (const i of points) for (const j of points) if (j > i) out.push([text.slice(0, i), text.slice(i, j), text.slice(j)]);
  return out;
}

describe('split corpus: PII split across streamed deltas', () => {
  for (const [shapeName, shape] of Object.entries(SHAPES)) {
    for (const v of corpus.values) {
      const text = corpus.prefix + v.value + corpus.suffix;
      const expected = corpus.prefix + (v.replacement ?? `[${v.label}]`) + corpus.suffix;
      const start = corpus.prefix.length;
      const end = start + v.value.length;
      const forbidden = fragments(v.value, shape([expected]));

      for (const parts of [2, 3] as const) {
        it(`${shapeName}: ${v.entity} "${v.value.slice(0, 24)}…" at every split point across ${parts} deltas`, () => {
          for (const deltas of splits(text, start, end, parts)) {
            const { pieces, counter } = run(shape(deltas));
            const received = pieces.join('');
            // What the client reads is the text with only the value replaced: the rest is byte-identical.
            expect(streamedText(received), `split ${JSON.stringify(deltas.map((d) => d.length))}`).toBe(expected);
            const leaks = pieces.flatMap((piece) => forbidden.filter((f) => piece.includes(f)).map((f) => `"${f}" in ${piece}`));
            expect(leaks).toEqual([]);
            if (!counter.entries().some((e) => e.entity === v.entity)) expect.fail(`no ${v.entity} counted`);
          }
        });
      }
    }
  }

  it('keeps every upstream event: as many events come out as went in, plus at most one flush per channel', () => {
    const v = corpus.values[0]!;
    const text = corpus.prefix + v.value + corpus.suffix;
    for (const shape of Object.values(SHAPES)) {
      const sse = shape([text.slice(0, 25), text.slice(25)]);
      const out = run(sse).pieces.join('');
      const inCount = parseSse(sse).length;
      const outCount = parseSse(out).length;
      expect(outCount).toBeGreaterThanOrEqual(inCount);
      expect(outCount).toBeLessThanOrEqual(inCount + 1);
    }
  });
});
