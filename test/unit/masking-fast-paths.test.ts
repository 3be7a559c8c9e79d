/**
 * The shortcuts masking takes to run at hundreds of MB/s read text exactly as the rules they stand in
 * for: one backward pass for every rule's hold-back, literal needles found by their rarest character,
 * digit runs found once for all numeric detectors, phone numbers accepted by the library's own
 * metadata before its parser is asked, JSON masked token by token, one-event SSE chunks framed at once.
 * Each is checked against the plain reading on many deterministic pseudo-random texts.
 */
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { describe, expect, it } from 'vitest';
import { compileProfile } from '../../server/masking/compiled-profile.js';
import { DeltaTemplate } from '../../server/masking/delta-template.js';
import { HoldBack } from '../../server/masking/hold-back.js';
import { maskBody } from '../../server/masking/mask-body.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { phoneLength } from '../../server/masking/phone-validator.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { SseFramer, type SseEvent } from '../../server/masking/sse-framer.js';
import { readShape } from '../../server/masking/stream-shapes.js';
import { CheckBudget } from '../../server/masking/text-rule.js';
import { literalFinder, TextScan } from '../../server/masking/text-scan.js';

const DETECTORS = ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'];

function profileOf(extra: Record<string, unknown> = {}) {
  return compileProfile('t', maskingProfileSchema.parse({ detectors: DETECTORS, ...extra }), {});
}

/** A small deterministic generator (mulberry32): the same texts on every run. */
function generator(seed: number): (n: number) => number {
  let state = seed;
  return (n) => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
}

function textOf(rnd: (n: number) => number, pieces: readonly string[], count: number): string {
  let text = '';
  for (let i = 0; i < count; i++) text += pieces[rnd(pieces.length)];
  return text;
}

const PIECES = [
  'jane.doe@example.org', '+1 415 555 0134', '(415) 555-2671', '4111 1111 1111 1111', '123-45-6789', 'DE89 3704 0044 0532 0130 00',
  '192.168.10.42', '2001:db8::1', 'sk-proj4f9aXc81LmQ2zR7tYv3wK0', 'AKIAIOSFODNN7EXAMPLE', 'aws_secret_key: ', '-----BEGIN ', 'PRIVATE KEY-----',
  '"password": "', 'ACME-1', 'eyJ', 'x', ' ', '.', '-', '+', '(', ':', '@', '_', '7', '42', 'A', 'DE', 'proj4', 'caf\u00e9', '\u200b', '\uff14', '\n',
];

describe('masking fast paths read text as the rules do', () => {
  it('one backward pass gives the hold-back of every rule (the least of their own)', () => {
    const profile = profileOf({ json_keys: ['password'], regex: [{ name: 'acct', pattern: 'ACME-[0-9]{6}', replace: '[A]' }] });
    const rules = profile.entries.map((e) => e.rule);
    const holdBack = new HoldBack(rules);
    const rnd = generator(1);
    for (let t = 0; t < 20_000; t++) {
      const text = textOf(rnd, PIECES, rnd(8));
      const from = rnd(text.length + 1);
      const expected = Math.min(text.length, ...rules.map((r) => r.holdFrom(text, from)));
      expect(holdBack.from(text, from), `${JSON.stringify(text)} from ${from}`).toBe(expected);
    }
  });

  it('finds a literal where indexOf finds it, searching by its rarest character', () => {
    const rnd = generator(2);
    const literals = ['sk-', 'rk_', 'ghp_', 'github_pat_', 'xox', 'AIza', 'AKIA', 'eyJ', '-----BEGIN ', 'logprob', 'top_tokens', '@', ':', 'aWs'];
    const alphabet = ['sk', '-', 'k-', 'x', 'xo', 'ox', 'e', 'ey', 'J', 'logp', 'rob', 'top_', 'tokens', 'A', 'AI', 'za', ' ', '@', ':', 'aW', 's', '_', 'BEGIN ', '-----'];
    for (let t = 0; t < 20_000; t++) {
      const text = textOf(rnd, alphabet, rnd(30));
      const literal = literals[rnd(literals.length)]!;
      const at = rnd(text.length + 1);
      expect(literalFinder(literal).find(text, at), `${literal} in ${JSON.stringify(text)} from ${at}`).toBe(text.indexOf(literal, at));
    }
  });

  it('finds every run of digits once, in prose and in tables of numbers alike', () => {
    const rnd = generator(3);
    const naive = (text: string, at: number): number => {
      for (let i = at; i < text.length; i++) if (/\d/.test(text[i]!) && (i === 0 || !/\d/.test(text[i - 1]!))) return i;
      return -1;
    };
    for (let t = 0; t < 3000; t++) {
      // Sparse digits, and lists dense enough to switch the search to a pattern half way.
      const text = t % 2 === 0 ? textOf(rnd, ['word ', '7', '42 ', '2024-01-15', 'a1b2', ' '], rnd(40)) : textOf(rnd, ['1', '23', ',', ' ', '.5', '-'], 200 + rnd(200));
      const from = rnd(text.length + 1);
      const scan = new TextScan(text, from);
      for (let at = from; at <= text.length; at += 1 + rnd(7)) expect(scan.digitRunAt(at), `${JSON.stringify(text)} from ${from} at ${at}`).toBe(naive(text, at));
    }
  });

  it('accepts a phone number by the library metadata only where the library accepts it, and refutes none it accepts', () => {
    const regions = ['US', 'GB', 'DE'];
    const check = phoneLength(regions);
    const rnd = generator(4);
    const starts = ['+1', '+44', '+49', '+33', '+7', '+86', '+800', '+882', '+', '', '', '', '0', '1'];
    const separators = [' ', '-', '.', '', '', ''];
    const ends = (s: string): number[] => {
      const found: number[] = [];
      for (let j = 1; j <= s.length; j++) if ((j === s.length || ' ().-'.includes(s[j]!)) && !' ().-'.includes(s[j - 1]!)) found.push(j);
      return found;
    };
    let valid = 0;
    for (let t = 0; t < 1500; t++) {
      let s = starts[rnd(starts.length)]!;
      const digits = 6 + rnd(9);
      for (let k = 0; k < digits; k++) s += String(rnd(10)) + (rnd(4) === 0 ? separators[rnd(separators.length)] : '');
      s = s.replace(/[ .-]+$/, '');
      if (!/^\+?\d[\d ().-]{5,22}\d$/.test(s)) continue;
      // The reference: the library alone, on the longest prefix that is a valid number.
      const international = s.startsWith('+');
      let expected = 0;
      for (const end of ends(s).reverse()) {
        const prefix = s.slice(0, end);
        const count = prefix.replace(/\D/g, '').length;
        if (count < 7 || count > 15 || /^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})(?!\d)/.test(prefix)) continue;
        const options = international ? [{ extract: false }] : regions.map((r) => ({ defaultCountry: r as CountryCode, extract: false }));
        if (options.some((o) => parsePhoneNumberFromString(prefix, o)?.isValid() === true)) {
          expected = end;
          break;
        }
      }
      if (expected > 0) valid++;
      expect(check(s, new CheckBudget()), s).toBe(expected);
    }
    expect(valid).toBeGreaterThan(100);
  });

  it('masks "(+1 …" whole, and a number written both ways whole each time', () => {
    const profile = profileOf();
    const counter = new MaskingCounter();
    // The library refutes "(+1 …": its verdict was once kept for "+1 …" too, leaving "+1 " in clear.
    expect(profile.text.mask('call (+1 415 555 0134 or +1 415 555 0134 now', counter)).toBe('call [PHONE] or [PHONE] now');
    expect(counter.total).toBe(2);
  });

  it('masks a JSON number a JavaScript client reads as a card, written with an exponent', () => {
    const profile = profileOf();
    const body = '{"card": 4.111111111111111e15, "note": "ok", "big": 1e400, "pi": 3.14}';
    const out = maskBody({ profile, format: 'json', body: Buffer.from(body) }).output.toString('utf8');
    expect(JSON.parse(out)).toEqual({ card: '[CREDIT_CARD]', note: 'ok', big: Infinity, pi: 3.14 });
    expect(out).toContain('"big": 1e400');
  });

  it('masks a JSON body of text rules token by token, keeping the bytes of everything else', () => {
    const profile = profileOf();
    const body = '{\n  "a": "mail jane.doe@example.org now",\n  "caf\\u00e9": [1, 2.50],\n  "a": "again +1 415 555 0134"\n}';
    const { output, summary } = maskBody({ profile, format: 'json', body: Buffer.from(body) });
    expect(output.toString('utf8')).toBe('{\n  "a": "mail [EMAIL] now",\n  "caf\\u00e9": [1, 2.50],\n  "a": "again [PHONE]"\n}');
    expect(summary.map((e) => [e.entity, e.count])).toEqual([
      ['email', 1],
      ['phone', 1],
    ]);
  });

  it('frames a chunk of one whole event as the line scanner does', () => {
    const events = ['data: {"a":1}\n\n', 'data:{"a":1}\n\n', 'data\n\n', 'event: x\n\n', ': note\n\n', 'id: 7\n\n', 'data: [DONE]\n\n', 'data: x\r\n\r\n', 'data: a\ndata: b\n\n'];
    const fields = (ev: SseEvent) => ({ raw: ev.raw, lines: ev.lines, eol: ev.eol, event: ev.event, data: ev.data });
    for (const event of events) {
      const whole = new SseFramer({ maxEvent: 1024, maxLine: 1024 }).push(event);
      const pieces = new SseFramer({ maxEvent: 1024, maxLine: 1024 });
      const split = [...pieces.push(event.slice(0, 3)), ...pieces.push(event.slice(3))];
      expect(whole.map(fields), JSON.stringify(event)).toEqual(split.map(fields));
    }
  });

  it('reads a delta from the frame only when it is one JSON string', () => {
    const data = JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { content: 'Sure' }, finish_reason: null }] });
    const doc = JSON.parse(data) as Record<string, unknown>;
    const template = DeltaTemplate.learn(data, doc, readShape(doc).slots[0]!, 'Sure')!;
    const framed = (token: string) => data.replace('"Sure"', token);
    expect(template.match(framed('"plain"'))).toBe('plain');
    expect(template.match(framed('"caf\\u00e9 \\"q\\""'))).toBe('café "q"');
    // Another structure in the string's place, a broken escape, a control character: not this frame.
    expect(template.match(framed('"a","x":"b"'))).toBeUndefined();
    expect(template.match(framed('"a\\x"'))).toBeUndefined();
    expect(template.match(framed('"a\u0001"'))).toBeUndefined();
    expect(template.match(framed('7'))).toBeUndefined();
  });
});
