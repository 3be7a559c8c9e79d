import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import { JsonBodyMasker } from '../../server/masking/json-body-masker.js';
import { loadMaskingProfiles } from '../../server/masking/load-profiles.js';
import { maskBody } from '../../server/masking/mask-body.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';

const configPath = fileURLToPath(new URL('../fixtures/masking/sluice.yaml', import.meta.url));
const profiles = await loadMaskingProfiles(parseConfigText(readFileSync(configPath, 'utf8')), { baseDir: dirname(configPath) });
const pii = profiles.forNames(['pii'])!;
const email = profiles.forNames(['hashed'])!;
const noPaths = { ...pii, jsonPaths: [] };

function masked(body: string, profile = pii): string {
  return maskBody({ profile, format: 'json', body: Buffer.from(body) }).output.toString('utf8');
}

/** Streams `body` through a JSON masker whose limit it exceeds, in chunks of `size` bytes. */
function maskedOverLimit(body: string, size: number, profile = noPaths): string {
  const masker = new JsonBodyMasker({ ...profile, maxJsonBody: 64 }, new MaskingCounter());
  const bytes = Buffer.from(body);
  let out = '';
  for (let at = 0; at < bytes.length; at += size) out += String(masker.write(bytes.subarray(at, at + size)));
  return out + String(masker.end());
}

describe('JSON over max_json_body', () => {
  it('stays valid JSON: float digits are never read as a card, a masked value is a JSON string', () => {
    const embedding = Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? 0.0000064336928 : -0.0411111111111111));
    const body = JSON.stringify({ data: [{ embedding, index: 0 }], note: 'mail ann@example.org', card: 4111111111111111 });
    for (const size of [1, 7, 64, 4096]) {
      const out = JSON.parse(maskedOverLimit(body, size));
      expect(out.data[0].embedding).toEqual(embedding);
      expect(out.note).toBe('mail [EMAIL]');
      expect(out.card).toBe('[CREDIT_CARD]');
    }
  });

  it('keeps a PII-free body byte-identical, escapes and formatting included', () => {
    const body = '{\n  "a": "caf\\u00e9 \\"q\\" \\/",\n  "n": [1.50, -2e10, true, null],\n  "k": {}\n}';
    expect(maskedOverLimit(body, 5)).toBe(body);
  });

  it('masks escaped values, object keys and json_keys values, streamed', () => {
    const body = '{"c":"jane\\u002edoe\\u0040example.com","ann@example.org":1,"password":{"x":"hunter2"},"long":"' + 'y'.repeat(300) + ' bob@example.com"}';
    const out = JSON.parse(maskedOverLimit(body, 3));
    expect(out).toEqual({ c: '[EMAIL]', '[EMAIL]': 1, password: { x: '[PASSWORD]' }, long: `${'y'.repeat(300)} [EMAIL]` });
  });

  it('refuses text that is not JSON rather than pass it', () => {
    expect(() => maskedOverLimit(`{"a": "${'x'.repeat(100)}"} Contact ann@example.org`, 8)).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
  });
});

describe('JSON within max_json_body: every string a parser reads', () => {
  it('masks every candidate of a repeated key, never sending the original bytes', () => {
    const out = masked('{"content":"jane.doe@example.com","content":"nothing"}', noPaths);
    expect(out).not.toContain('jane.doe');
    expect(out).toContain('[EMAIL]');
  });

  it('refuses a repeated key when json_paths need one reading', () => {
    expect(() => masked('{"content":"jane.doe@example.com","content":"nothing"}')).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
  });

  it('masks object keys and numbers (their integer digits), as JSON strings', () => {
    const out = JSON.parse(masked('{"jane.doe@example.com": {"card": 4111111111111111, "ssn": 123456789, "x": 0.0000064336928}, "m": "a@b.co"}', email));
    expect(Object.keys(out)[0]).toMatch(/^<EMAIL:[0-9a-f]{6}>$/);
    const inner = JSON.parse(masked('{"card": 4111111111111111, "x": 0.0000064336928, "s": "ok"}', noPaths));
    expect(inner).toEqual({ card: '[CREDIT_CARD]', x: 0.0000064336928, s: 'ok' });
  });

  it('masks values hidden by escapes in invalid JSON', () => {
    const out = masked('{"content": "jane\\u002edoe\\u0040example.com", oops');
    expect(out).not.toMatch(/jane|doe/);
  });
});
