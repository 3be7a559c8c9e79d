import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import { loadMaskingProfiles } from '../../server/masking/load-profiles.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { needsView, normalisedView } from '../../server/masking/normalised-view.js';
import { TextChannel } from '../../server/masking/text-masker.js';

const configPath = new URL('../fixtures/masking/sluice.yaml', import.meta.url).pathname;
const profiles = await loadMaskingProfiles(parseConfigText(readFileSync(configPath, 'utf8')), { baseDir: dirname(configPath) });
const text = profiles.forNames(['pii'])!.text;

const mask = (s: string): string => text.mask(s, new MaskingCounter());

/** Streams `s` through a text channel in pieces of `size` characters. */
function streamed(s: string, size: number): string {
  const channel = new TextChannel(text, new MaskingCounter());
  let out = '';
  for (let at = 0; at < s.length; at += size) out += channel.push(s.slice(at, at + size));
  return out + channel.end();
}

describe('the normalised view', () => {
  it('decodes escapes, applies NFKC, drops format characters and folds look-alikes, mapping back', () => {
    const view = normalisedView('a\\u0040b\u200b\uff11\u0430');
    expect(view.text).toBe('a@b1a');
    expect([...view.origin]).toEqual([0, 1, 7, 9, 10]);
    expect([...view.originEnd]).toEqual([1, 7, 8, 10, 11]);
  });

  it('is skipped for plain ASCII text', () => {
    expect(needsView('mail jane.doe@example.com, card 4111 1111 1111 1111')).toBe(false);
    expect(needsView('caf\u00e9')).toBe(true);
    expect(needsView('jane\\u0040x')).toBe(true);
    expect(needsView('ends in an escape cut short \\u00', false)).toBe(true);
    expect(needsView('ends in an escape cut short \\u00', true)).toBe(false);
  });
});

describe('masking through the normalised view', () => {
  const cases: [string, string][] = [
    ['mail j\u200ba\u200bn\u200be.doe@example.com now', 'mail [EMAIL] now'],
    ['card \uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 ok', 'card [CREDIT_CARD] ok'],
    ['mail jane.doe\uff20example.com now', 'mail [EMAIL] now'],
    ['mail j\u0430ne.d\u043ee@example.com now', 'mail [EMAIL] now'],
    ['mail jane\\u002edoe\\u0040example.com now', 'mail [EMAIL] now'],
    ['mail \u202ejane.doe@example.com\u202c now', 'mail \u202e[EMAIL]\u202c now'],
  ];

  it.each(cases)('masks %j whole, the invisible characters inside the value included', (input, expected) => {
    expect(mask(input)).toBe(expected);
  });

  it.each(cases)('masks %j streamed a character at a time and in pieces (hold-back counts swallowed characters)', (input, expected) => {
    for (const size of [1, 2, 3, 7]) expect(streamed(input, size)).toBe(expected);
  });

  it('leaves PII-free non-ASCII text exactly as it was', () => {
    const input = 'Ｔｏｋｙｏ　東京 — naïve café ﬁ \u200d👩‍💻 \\u00e9 Ωμέγα';
    expect(mask(input)).toBe(input);
    expect(streamed(input, 3)).toBe(input);
  });
});
