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
import { detectorRules } from '../../server/masking/detectors.js';
import { HoldBack } from '../../server/masking/hold-back.js';
import { maskBody, maskBodyAsync } from '../../server/masking/mask-body.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { NeedleSet } from '../../server/masking/needle-set.js';
import { phoneLength } from '../../server/masking/phone-validator.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { SseFramer, type SseEvent } from '../../server/masking/sse-framer.js';
import { SseMasker } from '../../server/masking/sse-masker.js';
import { readShape } from '../../server/masking/stream-shapes.js';
import { CheckBudget, hasNeedle } from '../../server/masking/text-rule.js';
import { caselessFinder, literalFinder, TextScan } from '../../server/masking/text-scan.js';

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

describe('masking shortcuts that spare searches read text as the searches would', () => {
  it('the table of every rule\'s needles finds a needle wherever the rule\'s own search does', () => {
    const profile = profileOf();
    const rules = profile.entries.map((e) => e.rule);
    const needles = NeedleSet.of(rules)!;
    expect(needles).not.toBeNull();
    const rnd = generator(5);
    for (let t = 0; t < 5000; t++) {
      const text = textOf(rnd, PIECES, rnd(12));
      const from = rnd(text.length + 1);
      const marked = new Uint8Array(rules.length);
      needles.markLive(text, from, marked);
      // Read from the start in pieces, as a stream reads its deltas: the same verdict for the text so far.
      const last = needles.state();
      let searched = 0;
      for (let end = 0; end < text.length; end += 1 + rnd(6)) searched = needles.find(text.slice(0, end), searched, last);
      needles.find(text, searched, last);
      const found = rules.map((r) => hasNeedle(r.contains!, text, Math.max(0, from - r.contains!.before), new TextScan(text, from)));
      rules.forEach((r, i) => {
        if (found[i]) expect(marked[i], `${r.rule} in ${JSON.stringify(text)} from ${from}`).toBe(1);
      });
      if (found.some(Boolean)) expect(needles.mayMatch(last, from), `${JSON.stringify(text)} from ${from}`).toBe(true);
    }
  });

  it('finds the word of the AWS key name in any case where its pattern does', () => {
    const finder = caselessFinder('key');
    const rnd = generator(6);
    const alphabet = ['k', 'K', 'e', 'E', 'y', 'Y', 'ke', 'Ke', 'ey', 'eY', ' ', 'x', '_key', 'KEY', 'kEy'];
    for (let t = 0; t < 20_000; t++) {
      const text = textOf(rnd, alphabet, rnd(20));
      const at = rnd(text.length + 1);
      const pattern = /[kK][eE][yY]/g;
      pattern.lastIndex = at;
      const expected = pattern.exec(text)?.index ?? -1;
      expect(finder.find(text, at), `${JSON.stringify(text)} from ${at}`).toBe(expected);
      expect(new TextScan(text, 0).literalAt(finder, at)).toBe(expected);
    }
  });

  it('numeric detectors try their pattern at every index where it matches', () => {
    // Each rule's candidates, passed over unchecked one after another, are its pattern's own matches
    // found by a plain search resuming where the rule resumes: no start the rule skips holds a match.
    const pieces = ['1', '23', '415', '555', '0134', '4111', '2024', ' ', '-', '.', ':', '(', ')', '+', '(+', 'DE', 'GB82', 'x', 'a', 'fe80', '\n', '192.168.', '10', '.42'];
    const rnd = generator(7);
    for (const [name, index, source, checked] of NUMERIC_PATTERNS) {
      const rule = detectorRules(name, { phoneRegions: ['US'] })[index]!;
      for (let t = 0; t < 2000; t++) {
        const text = textOf(rnd, pieces, rnd(24));
        const cursor = rule.cursor(text, 0, text.length, new CheckBudget(), new TextScan(text, 0));
        const seen: string[] = [];
        for (let c = cursor.peek(); c !== null; c = cursor.peek()) {
          seen.push(`${c.start}-${c.end}`);
          cursor.skip();
        }
        const plain = new RegExp(source, 'g');
        const expected: string[] = [];
        for (let m = plain.exec(text); m !== null; m = plain.exec(text)) {
          if (m[0] !== '') expected.push(`${m.index}-${m.index + m[0].length}`);
          // A candidate passed over unchecked resumes just after its start; one without a check, after it.
          plain.lastIndex = checked || m[0] === '' ? m.index + 1 : m.index + m[0].length;
        }
        expect(seen, `${rule.rule} in ${JSON.stringify(text)}`).toEqual(expected);
      }
    }
  });

  it('masks an SSE stream sent an event a chunk exactly as sent in one piece', () => {
    const profile = profileOf();
    const rnd = generator(8);
    const deltas = ['Sure', ', ', 'call ', '+1 415', ' 555 0134', ' or ', 'jane.doe', '@example.org', ' café', ' "quoted"', ' tab\t', ' 4111 1111', ' 1111 1111', '\n', '👋', ' sk-proj4f9aXc81', 'LmQ2zR7tYv3wK0', ' done.'];
    for (let t = 0; t < 300; t++) {
      const head = { id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'm' };
      const events: string[] = [`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })}\n\n`];
      for (let i = 0; i < 1 + rnd(30); i++) {
        const delta = deltas[rnd(deltas.length)]!;
        events.push(`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: { content: delta }, finish_reason: null }] })}\n\n`);
        if (rnd(12) === 0) events.push(`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: delta } }] }, finish_reason: null }] })}\n\n`);
        // The same frame up to the delta, another after it: not the frame the stream repeats.
        if (rnd(10) === 0) events.push(`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: { content: delta }, finish_reason: 'length' }] })}\n\n`);
        if (rnd(15) === 0) events.push(': keep-alive\n\n');
      }
      events.push(`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`, 'data: [DONE]\n\n');
      const oneByOne = sseMasked(profile, events);
      expect(oneByOne.out).toBe(sseMasked(profile, [events.join('')]).out);
      expect(oneByOne.summary).toEqual(sseMasked(profile, [events.join('')]).summary);
    }
  });

  it('masks a JSON body the same again once its keys and values are remembered as clean, and as the sliced masking does', async () => {
    const profile = profileOf();
    const rnd = generator(9);
    const values = ['ok', 'chatcmpl-abcdefghijkl', 'jane.doe@example.org', '+1 415 555 0134', 'a\\b', 'caf\u00e9', 'say \\"hi\\"', '4111 1111 1111 1111', 'x'.repeat(70), '123-45-0000', '123-45-6780'];
    const keys = ['id', 'object', 'content', 'finish_reason', 'prompt_tokens', 'id', 'caf\\u00e9'];
    for (let t = 0; t < 300; t++) {
      let body = '{';
      for (let i = 0; i < 1 + rnd(8); i++) {
        const value = rnd(4) === 0 ? String(rnd(10_000)) : `"${values[rnd(values.length)]}"`;
        body += `${i > 0 ? ',' : ''}"${keys[rnd(keys.length)]}":${value}`;
      }
      body += `,"long":"${PII_TEXT.repeat(1 + rnd(3))}"}`;
      // A profile of its own remembers nothing yet: its masking reads every token.
      const fresh = maskBody({ profile: profileOf(), format: 'json', body: Buffer.from(body) });
      for (let k = 0; k < 2; k++) {
        const remembered = maskBody({ profile, format: 'json', body: Buffer.from(body) });
        expect(remembered.output.toString('utf8'), body).toBe(fresh.output.toString('utf8'));
        expect(remembered.summary).toEqual(fresh.summary);
      }
      const sliced = await maskBodyAsync({ profile, format: 'json', body: Buffer.from(body) });
      expect(sliced.output.toString('utf8'), body).toBe(fresh.output.toString('utf8'));
    }
  });
});

/** Text with a value of each kind in prose, long enough to be masked as a long string. */
const PII_TEXT = 'The report covers revenue. Mail jane.doe@example.org or call +1 415 555 0134; card 4111 1111 1111 1111, SSN 123-45-6789, IBAN DE89 3704 0044 0532 0130 00 from 192.168.10.42. ';

/**
 * The numeric detectors' rules (by detector and place among its rules) with their patterns as
 * detectors.ts writes them, the plain reading their shortcuts stand in for, and whether they check
 * their candidates.
 */
const NUMERIC_PATTERNS: readonly (readonly ['phone' | 'credit_card' | 'ssn' | 'iban' | 'ip_address', number, string, boolean])[] = [
  ['phone', 0, String.raw`(?<![\w+.-])(?:\+|\(\+?)?\d[\d ().-]{5,22}\d(?!\d)`, true],
  ['credit_card', 0, String.raw`(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])`, true],
  ['ssn', 0, String.raw`(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])`, true],
  ['iban', 0, String.raw`(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])`, true],
  ['ip_address', 0, String.raw`(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)`, false],
  ['ip_address', 1, String.raw`(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])`, true],
];

function sseMasked(profile: ReturnType<typeof profileOf>, chunks: readonly string[]): { out: string; summary: unknown } {
  const counter = new MaskingCounter();
  const masker = new SseMasker(profile, counter);
  let out = '';
  for (const c of chunks) out += masker.write(Buffer.from(c));
  return { out: out + masker.end(), summary: counter.entries() };
}

