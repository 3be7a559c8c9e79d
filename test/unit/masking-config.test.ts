import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../server/config/load.js';

const base = {
  identity: { issuer: 'https://idp.example', audience: 'urn:sluice:gateway', cli_client_id: 'cli' },
  connections: [{ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:9', allow_groups: ['g'], masking: ['pii', 'x'] }],
};

function problems(raw: unknown): string[] {
  try {
    validateConfig(raw);
    return [];
  } catch (err) {
    return ((err as { details?: { problems?: string[] } }).details?.problems ?? []) as string[];
  }
}

describe('masking configuration', () => {
  it('reports a connection naming an unknown profile, with its path', () => {
    expect(problems({ ...base, masking_profiles: { pii: { detectors: ['email'] } } })).toEqual([
      'connections[0].masking[1]: unknown masking profile "x"',
    ]);
  });

  it('fills defaults for a profile', () => {
    const cfg = validateConfig({ ...base, connections: [], masking_profiles: { pii: {} } });
    expect(cfg.masking_profiles.pii).toMatchObject({
      detectors: [],
      style: 'redact',
      unknown_stream: 'mask',
      binary: 'block',
      max_json_body: 8 * 1024 * 1024,
      phone_regions: ['US'],
    });
  });

  it('refuses at load a regex RE2 cannot run, naming the rule', () => {
    const raw = { ...base, connections: [], masking_profiles: { pii: { regex: [{ name: 'bad', pattern: '(?<=id:)\\d+' }] } } };
    expect(problems(raw)).toEqual([
      expect.stringMatching(/^masking_profiles\.pii\.regex\[0\]\.pattern: of regex rule "bad" cannot run on RE2: .*look-behind/),
    ]);
  });

  it('refuses an invalid regex and an unknown detector', () => {
    const raw = { ...base, connections: [], masking_profiles: { pii: { detectors: ['dna'], regex: [{ name: 'x', pattern: '([a-z]' }] } } };
    const p = problems(raw);
    expect(p).toHaveLength(2);
    expect(p.join('\n')).toMatch(/masking_profiles\.pii\.detectors\[0\]/);
    expect(p.join('\n')).toMatch(/regex\[0\]\.pattern: of regex rule "x" cannot run on RE2: missing \)/);
  });

  it('refuses the hash style without masking.hash_key', () => {
    const raw = { ...base, connections: [], masking_profiles: { pii: { style: 'hash' } } };
    expect(problems(raw)).toEqual(['masking_profiles.pii.style: the hash style needs masking.hash_key']);
    expect(problems({ ...raw, masking: { hash_key: 'a-key-of-32-characters-at-least!' } })).toEqual([]);
  });
});
