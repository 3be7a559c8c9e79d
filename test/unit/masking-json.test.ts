import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import { loadMaskingProfiles, type MaskingProfiles } from '../../server/masking/load-profiles.js';
import { maskBody } from '../../server/masking/mask-body.js';
import { JsonBodyMasker } from '../../server/masking/json-body-masker.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { readFileSync } from 'node:fs';

const configPath = fileURLToPath(new URL('../fixtures/masking/sluice.yaml', import.meta.url));
const profiles: MaskingProfiles = await loadMaskingProfiles(parseConfigText(readFileSync(configPath, 'utf8')), { baseDir: dirname(configPath) });

function maskJsonText(profile: string, body: string) {
  const r = maskBody({ profile: profiles.forNames([profile])!, format: 'json', body: Buffer.from(body) });
  return { out: r.output.toString('utf8'), summary: r.summary };
}

describe('JSON bodies', () => {
  it('masks string values, json_keys at any depth (any type) and json_paths; counts without values', () => {
    const body = JSON.stringify({
      choices: [{ message: { role: 'assistant', content: 'Mail john@example.com please' } }],
      auth: { nested: { Password: 12345, api_key: { id: 'k' } } },
      metadata: { customer: { address: '1 Main St', name: 'Ann' } },
    });
    const { out, summary } = maskJsonText('pii', body);
    expect(JSON.parse(out)).toEqual({
      choices: [{ message: { role: 'assistant', content: 'Mail [EMAIL] please' } }],
      auth: { nested: { Password: '[PASSWORD]', api_key: '[API_KEY]' } },
      metadata: { customer: { address: '[JSON_PATH]', name: 'Ann' } },
    });
    expect(summary).toEqual([
      { entity: 'api_key', rule: 'json_key:api_key', count: 1 },
      { entity: 'email', rule: 'detector:email', count: 1 },
      { entity: 'json_path', rule: 'json_path:$.metadata.customer.address', count: 1 },
      { entity: 'password', rule: 'json_key:password', count: 1 },
    ]);
    expect(JSON.stringify(summary)).not.toMatch(/john|12345|Main/);
  });

  it('masks tool-call arguments, a JSON document inside a string', () => {
    const args = JSON.stringify({ email: 'ann@example.org', password: 'hunter2' });
    const { out } = maskJsonText('pii', JSON.stringify({ tool_calls: [{ function: { name: 'save', arguments: args } }] }));
    expect(JSON.parse(JSON.parse(out).tool_calls[0].function.arguments)).toEqual({ email: '[EMAIL]', password: '[PASSWORD]' });
  });

  it('sends the original bytes, formatting and all, when nothing is masked', () => {
    const body = '{\n  "content": "nothing to see",\n  "n": 1.50\n}\n';
    expect(maskJsonText('pii', body)).toEqual({ out: body, summary: [] });
  });

  it('masks invalid JSON under a JSON content type as text, never passing it raw', () => {
    const { out } = maskJsonText('pii', '{"content": "call +1 415 555 2671", "password": "hunter2", oops');
    expect(out).toBe('{"content": "call [PHONE]", "password": "[PASSWORD]", oops');
  });

  it('applies custom selectors loaded at start, with the JSONPath of each value', () => {
    const { out, summary } = maskJsonText('custom', JSON.stringify({ row: { employee: 'E12345', other: 'E12345', mail: 'x@example.com' } }));
    expect(JSON.parse(out)).toEqual({ row: { employee: '[EMPLOYEE]', other: 'E12345', mail: '[EMAIL]' } });
    expect(summary).toContainEqual({ entity: 'selector', rule: 'selector:./employee-id-selector.js', count: 1 });
  });

  it('masks a JSON body over max_json_body token by token while it streams, keeping it valid JSON', () => {
    const profile = profiles.forNames(['hashed'])!;
    const small = { ...profile, maxJsonBody: 1024 };
    const masker = new JsonBodyMasker(small, new MaskingCounter());
    const filler = 'x'.repeat(2000);
    const first = masker.write(Buffer.from(`{"a":"${filler} to bob@example.com`));
    expect(first.length).toBeGreaterThan(1000); // released before the end: not buffered whole
    const out = first + String(masker.write(Buffer.from('"}'))) + String(masker.end());
    expect(out).toMatch(/^\{"a":"x+ to <EMAIL:[0-9a-f]{6}>"\}$/);
  });

  it('refuses a JSON body over max_json_body when json_paths need it parsed', () => {
    const profile = { ...profiles.forNames(['pii'])!, maxJsonBody: 1024 };
    const masker = new JsonBodyMasker(profile, new MaskingCounter());
    expect(() => masker.write(Buffer.alloc(2048, 0x20))).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
  });
});
