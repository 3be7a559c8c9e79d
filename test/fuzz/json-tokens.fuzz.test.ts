/**
 * The JSON token walk against JSON.parse: it reads a text whole exactly when JSON.parse does (however the
 * text is cut into pushes), so a profile of text rules masks a body without parsing it first, with the
 * output and counts a parse first would have given; a body JSON.parse refuses is masked as text with
 * nothing counted twice.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileProfile } from '../../server/masking/compiled-profile.js';
import { JsonBodyMasker } from '../../server/masking/json-body-masker.js';
import { maskEveryCandidate } from '../../server/masking/json-token-body-masker.js';
import { InvalidJsonText, JsonTokenMasker, maskJsonLikeText } from '../../server/masking/json-token-masker.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { MASK_STEP_CHARS } from '../../server/masking/text-masker.js';
import { fuzz, fuzzSettings } from './fuzz-settings.js';

const profile = compileProfile('pii', maskingProfileSchema.parse({ detectors: ['email', 'phone', 'credit_card'] }), {});

/** Characters an edit puts in: JSON's structure, string and number parts, whitespace JSON refuses, controls. */
const EDIT_CHARACTERS = ['{', '}', '[', ']', ',', ':', '"', '\\', ' ', '\n', '\t', '\f', '\u00a0', '\u0001', '\u001f', '0', '1', '-', '+', '.', 'e', 'E', 'a', 't', 'n', 'u', '/', "'", '@', '\ufeff'];

const edit = fc.record({ at: fc.nat(10_000), op: fc.constantFrom('delete', 'insert', 'replace'), char: fc.constantFrom(...EDIT_CHARACTERS) });

/** String content with what JSON must escape (quotes, backslashes, control characters) and what it need not. */
const awkwardString = fc.string({ unit: fc.constantFrom('a', ' ', '"', '\\', '/', '\u0000', '\t', '\u001f', '\u2028', '\ud800', '\ufeff', 'é', '@'), maxLength: 90 });

/** Valid JSON with PII in its strings and numbers, deep nesting and awkward strings, then up to three edits that often make it invalid. */
const text = fc
  .tuple(
    fc.oneof(
      fc.json({ maxDepth: 3 }),
      fc.record({ note: fc.constantFrom('mail ann@example.org', 'call +1 415 555 0100', 'x'), card: fc.constantFrom(4111111111111111, 7), list: fc.array(fc.integer(), { maxLength: 3 }) }).map((v) => JSON.stringify(v)),
      fc.array(fc.oneof(awkwardString, fc.double(), fc.constantFrom(true, null)), { maxLength: 4 }).map((v) => JSON.stringify(v)),
      fc.tuple(fc.nat(400), fc.boolean()).map(([depth, objects]) => (objects ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) : '['.repeat(depth) + '1' + ']'.repeat(depth))),
    ),
    fc.array(edit, { maxLength: 3 }),
  )
  .map(([json, edits]) => {
    let t = json;
    for (const { at, op, char } of edits) {
      const i = t.length === 0 ? 0 : at % (t.length + (op === 'insert' ? 1 : 0));
      t = op === 'delete' ? t.slice(0, i) + t.slice(i + 1) : op === 'insert' ? t.slice(0, i) + char + t.slice(i) : t.slice(0, i) + char + t.slice(i + 1);
    }
    return t;
  });

function parses(t: string): boolean {
  try {
    JSON.parse(t);
    return true;
  } catch {
    return false;
  }
}

/** Whether the token walk reads `t` whole, pushed in pieces cut at `cuts`; strings past `maxString` stream through it. */
function walks(t: string, cuts: readonly number[], maxString = Infinity, by = profile): boolean {
  const walker = new JsonTokenMasker(by, new MaskingCounter(), { maxString });
  try {
    let at = 0;
    for (const cut of [...new Set(cuts)].filter((c) => c > 0 && c < t.length).sort((a, b) => a - b)) {
      walker.push(t.slice(at, cut));
      at = cut;
    }
    walker.push(t.slice(at));
    walker.end();
    return true;
  } catch (err) {
    if (err instanceof InvalidJsonText) return false;
    throw err;
  }
}

describe('JSON token walk (fuzz)', () => {
  it('reads a text whole exactly when JSON.parse does, however it is cut', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'json tokens: grammar',
      fc.property(text, fc.array(fc.nat(200), { maxLength: 4 }), fc.constantFrom(Infinity, 4, 70), (t, cuts, maxString) => {
        expect(walks(t, []), JSON.stringify(t)).toBe(parses(t));
        expect(walks(t, cuts, maxString), JSON.stringify(t)).toBe(parses(t));
      }),
    );
  });

  it('masks a body without parsing it as it did after a parse: valid JSON token by token, other text as text, each value counted once', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'json tokens: body masking',
      fc.property(text, (t) => {
        const body = Buffer.from(t);
        const counter = new MaskingCounter();
        const out = String(new JsonBodyMasker(profile, counter).maskWhole(body));
        // What a parse first decided: JSON masked token by token, anything else as text.
        const expected = new MaskingCounter();
        const valid = parses(t);
        expect(out).toBe(valid ? String(maskEveryCandidate(t, body, profile, expected)) : maskJsonLikeText(t, profile, expected));
        expect(counter.entries()).toEqual(expected.entries());
        if (valid) expect(parses(out), out).toBe(true);
      }),
    );
  });

  it('masks a body in slices as it does at once, when the walk cuts it and when it refuses it late', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'json tokens: sliced body masking',
      fc.asyncProperty(text, async (t) => {
        // Leading whitespace takes the body past one step, so it is masked in slices with turns between them.
        const body = Buffer.from(' '.repeat(MASK_STEP_CHARS) + t);
        const whole = new MaskingCounter();
        const sliced = new MaskingCounter();
        expect(String(await new JsonBodyMasker(profile, sliced).maskWholeAsync(body))).toBe(String(new JsonBodyMasker(profile, whole).maskWhole(body)));
        expect(sliced.entries()).toEqual(whole.entries());
      }),
      500,
    );
  });

  it('refuses a raw control character in a string even where the same text, escaped, is remembered as clean', () => {
    // A profile of its own: the fuzz targets above fill the shared one's memory of clean tokens to its bound.
    const fresh = compileProfile('pii', maskingProfileSchema.parse({ detectors: ['email'] }), {});
    // The escaped key is read, left alone by every rule and remembered as clean; its raw twin is not JSON.
    const remembered = new JsonTokenMasker(fresh, new MaskingCounter(), { maxString: Infinity });
    expect(remembered.push('{"a\\tb":1,"x\\u0001":2}') + remembered.end()).toBe('{"a\\tb":1,"x\\u0001":2}');
    for (const raw of ['{"a\tb":1}', '{"x\u0001":2}', '["a\tb"]']) {
      expect(parses(raw)).toBe(false);
      expect(walks(raw, [], Infinity, fresh)).toBe(false);
      expect(walks(raw, [2], Infinity, fresh)).toBe(false);
    }
  });
});
