import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../shared/errors.js';
import { compileProfile } from '../../server/masking/compiled-profile.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { SseMasker } from '../../server/masking/sse-masker.js';
import { streamedText, streamedToolArguments } from '../fixtures/masking/sse-streams.js';
import { fuzz, fuzzSettings } from './fuzz-settings.js';

/** The limits the masker is built with: small, so that the long-line property reaches them quickly. */
const MAX_LINE = 4096;
const MAX_JSON_BODY = 64 * 1024;

const profile = compileProfile(
  'pii',
  maskingProfileSchema.parse({ detectors: ['email', 'phone', 'credit_card'], max_json_body: MAX_JSON_BODY }),
  { max_line: MAX_LINE },
);

// ---- PII values ------------------------------------------------------------------------------------

const lower = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz'), minLength: min, maxLength: max });
const alnum = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'), minLength: min, maxLength: max });

const email = fc
  .tuple(lower(1, 1), alnum(0, 8), fc.option(fc.tuple(fc.constantFrom('.', '_', '+'), alnum(1, 5))), lower(2, 10), fc.option(lower(2, 8)), fc.constantFrom('com', 'org', 'net', 'io', 'de', 'co.uk'))
  .map(([a, b, tag, domain, sub, tld]) => `${a}${b}${tag === null ? '' : tag.join('')}@${domain}.${sub === null ? '' : `${sub}.`}${tld}`);

/** A Luhn-valid card number of a real issuer's length, in one of the shapes people type it in. */
const card = fc
  .tuple(
    fc.constantFrom({ prefix: '4', length: 16 }, { prefix: '51', length: 16 }, { prefix: '55', length: 16 }, { prefix: '37', length: 15 }, { prefix: '34', length: 15 }),
    fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 15, maxLength: 15 }),
    fc.constantFrom('', ' ', '-'),
  )
  .map(([{ prefix, length }, digits, sep]) => {
    const body = (prefix + digits.join('')).slice(0, length - 1);
    const full = body + luhnDigit(body);
    if (sep === '') return full;
    const groups = length === 15 ? [4, 6, 5] : [4, 4, 4, 4];
    let at = 0;
    return groups.map((g) => full.slice(at, (at += g))).join(sep);
  });

function luhnDigit(body: string): string {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    let d = Number(body[body.length - 1 - i]);
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
}

/** US numbers (the profile's region) in the usual shapes, and one in international form from elsewhere. */
const phone = fc
  .tuple(fc.constantFrom('415', '212', '646', '312', '617', '206'), fc.integer({ min: 200, max: 989 }), fc.integer({ min: 1000, max: 9999 }), fc.integer({ min: 0, max: 4 }))
  .map(([area, exchange, line, shape]) => {
    switch (shape) {
      case 0:
        return `+1 ${area} ${exchange} ${line}`;
      case 1:
        return `(${area}) ${exchange}-${line}`;
      case 2:
        return `${area}-${exchange}-${line}`;
      case 3:
        return `+1-${area}-${exchange}-${line}`;
      default:
        return `+44 20 7946 ${String(line).slice(0, 4)}`;
    }
  });

const pii = fc.oneof(email, card, phone);

/** Words that no detector reads, some of them multi-byte, so split points fall inside characters too. */
const word = fc.oneof(lower(1, 9), fc.constantFrom('Grüße', 'Köln', '—', '👋', 'naïve', 'ok,', 'well!', 'so:', '"quoted"', 'a\\b', 'tab\there', 'new\nline'));

/** A text of words with PII values among them, each value standing alone between spaces. */
const textWithPii = fc
  .array(fc.oneof({ weight: 4, arbitrary: word.map((w) => ({ w, value: null as string | null })) }, { weight: 1, arbitrary: pii.map((v) => ({ w: v, value: v as string | null })) }), { minLength: 1, maxLength: 24 })
  .map((parts) => ({ text: parts.map((p) => p.w).join(' '), values: parts.flatMap((p) => (p.value === null ? [] : [p.value])) }));

// ---- SSE shapes --------------------------------------------------------------------------------------

/** Cuts `text` at the given points (taken modulo its length) into consecutive pieces. */
function cut(text: string, points: readonly number[]): string[] {
  const at = [...new Set(points.map((p) => p % (text.length + 1)))].sort((a, b) => a - b);
  const pieces: string[] = [];
  let from = 0;
  for (const p of [...at, text.length]) {
    if (p <= from) continue;
    pieces.push(text.slice(from, p));
    from = p;
  }
  return pieces.length === 0 ? [''] : pieces;
}

const eol = fc.constantFrom('\n', '\r\n', '\r');

/** How one event is written: extra lines beside its data, the JSON's spacing, the line ends. */
const eventStyle = fc.record({
  id: fc.boolean(),
  comment: fc.boolean(),
  eventName: fc.boolean(),
  spaced: fc.boolean(),
  eols: fc.array(eol, { minLength: 4, maxLength: 4 }),
  blank: eol,
});
type EventStyle = typeof eventStyle extends fc.Arbitrary<infer T> ? T : never;

/** One SSE event carrying `data`, written in `style`; the blank line never merges into the line before it. */
function sseEvent(data: string, style: EventStyle, n: number): string {
  const lines: string[] = [];
  if (style.comment) lines.push(': keep-alive');
  if (style.id) lines.push(`id: ${n}`);
  if (style.eventName) lines.push('event: message');
  lines.push(`data: ${data}`);
  let out = '';
  let last = '\n';
  lines.forEach((line, i) => {
    last = style.eols[i]!;
    out += line + last;
  });
  // "\r" then "\n" would read as one CRLF, not as the blank line that ends the event.
  const blank = last === '\r' && style.blank === '\n' ? '\r' : style.blank;
  return out + blank;
}

/** An OpenAI chat.completion.chunk stream: the text in random deltas, maybe tool-call arguments too, in random styles. */
const chatStream = fc
  .record({
    content: textWithPii,
    contentCuts: fc.array(fc.nat(), { maxLength: 8 }),
    args: fc.option(textWithPii, { freq: 3 }),
    argCuts: fc.array(fc.nat(), { maxLength: 4 }),
    role: fc.boolean(),
    done: fc.boolean(),
    styles: fc.array(eventStyle, { minLength: 16, maxLength: 16 }),
  })
  .map(({ content, contentCuts, args, argCuts, role, done, styles }) => {
    const datas: unknown[] = [];
    const chunk = (delta: unknown, finish: string | null = null) => ({ id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] });
    if (role) datas.push(chunk({ role: 'assistant', content: '' }));
    for (const d of cut(content.text, contentCuts)) datas.push(chunk({ content: d }));
    if (args !== null) {
      const argsJson = JSON.stringify({ note: args.text });
      cut(argsJson, argCuts).forEach((a, i) => {
        datas.push(chunk({ tool_calls: [i === 0 ? { index: 0, id: 'call_1', type: 'function', function: { name: 'save', arguments: a } } : { index: 0, function: { arguments: a } }] }));
      });
    }
    datas.push(chunk({}, args === null ? 'stop' : 'tool_calls'));
    let sse = '';
    datas.forEach((d, i) => {
      const style = styles[i % styles.length]!;
      sse += sseEvent(style.spaced ? JSON.stringify(d, null, 1).replace(/\n/g, '') : JSON.stringify(d), style, i);
    });
    if (done) sse += sseEvent('[DONE]', styles[datas.length % styles.length]!, datas.length);
    return { sse, values: [...content.values, ...(args?.values ?? [])], hasArgs: args !== null };
  });

/** Feeds `bytes` to a new masker in the pieces `cuts` makes; what came out, all of it. */
function maskInPieces(bytes: Buffer, cuts: readonly number[]): string {
  const masker = new SseMasker(profile, new MaskingCounter());
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let out = '';
  let from = 0;
  for (const p of [...at, bytes.length]) {
    if (p <= from) continue;
    out += masker.write(bytes.subarray(from, p));
    from = p;
  }
  return out + masker.end();
}

describe('SSE framer and stream masker (fuzz)', () => {
  it('masks a chat stream cut anywhere (bytes, CR/LF/CRLF) exactly as in one piece, and no PII value reaches the output', { timeout: fuzzSettings(1000).timeoutMs }, async () => {
    await fuzz(
      'sse-masking: split streams',
      fc.property(chatStream, fc.array(fc.nat(), { maxLength: 24 }), ({ sse, values, hasArgs }, cuts) => {
        const bytes = Buffer.from(sse);
        const whole = maskInPieces(bytes, []);
        expect(maskInPieces(bytes, cuts)).toBe(whole);
        // Nowhere in the bytes, nor in what a client assembles from the deltas (a value split across them).
        const assembled = streamedText(whole) + (hasArgs ? streamedToolArguments(whole) : '');
        for (const v of values) {
          expect(whole).not.toContain(v);
          expect(assembled).not.toContain(v);
        }
      }),
      1000,
    );
  });

  it(`refuses a line longer than max_line (${MAX_LINE}) with ERR_MASKING_BLOCKED as soon as it is longer, however it arrives`, { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'sse-masking: long lines',
      fc.property(
        fc.constantFrom('data: ', ': ', 'id: ', 'event: ', 'x'),
        fc.constantFrom('a', 'é', '7', ' ', 'bob@example.com '),
        fc.array(fc.integer({ min: 1, max: 2 * MAX_LINE }), { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        (prefix, unit, sizes, leadingEvent) => {
          const masker = new SseMasker(profile, new MaskingCounter());
          const first = leadingEvent ? 'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n' : '';
          let fed = 0;
          let line: string = prefix;
          let refused: unknown = null;
          for (let i = 0; refused === null; i++) {
            const size = sizes[i % sizes.length]!;
            while (line.length < size) line += unit;
            const piece = (i === 0 ? first : '') + line.slice(0, size);
            line = line.slice(size);
            try {
              masker.write(Buffer.from(piece));
            } catch (err) {
              refused = err;
              break;
            }
            fed += piece.length - (i === 0 ? first.length : 0);
          }
          expect(refused).toBeInstanceOf(SluiceError);
          expect((refused as SluiceError).code).toBe('ERR_MASKING_BLOCKED');
          // Refused by the piece that took the line past max_line, not later.
          expect(fed).toBeLessThanOrEqual(MAX_LINE);
        },
      ),
    );
  });
});
