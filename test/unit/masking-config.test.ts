import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../server/config/load.js';
import { backtrackingRisk } from '../../server/masking/regex-safety.js';

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

  it('refuses a backtracking-prone regex at load, naming the rule', () => {
    const raw = { ...base, connections: [], masking_profiles: { pii: { regex: [{ name: 'bad', pattern: '(a+)+$' }] } } };
    expect(problems(raw)).toEqual([expect.stringMatching(/^masking_profiles\.pii\.regex\[0\]\.pattern: is refused: nested quantifier/)]);
  });

  it('refuses an invalid regex and an unknown detector', () => {
    const raw = { ...base, connections: [], masking_profiles: { pii: { detectors: ['dna'], regex: [{ name: 'x', pattern: '([a-z]' }] } } };
    const p = problems(raw);
    expect(p).toHaveLength(2);
    expect(p.join('\n')).toMatch(/masking_profiles\.pii\.detectors\[0\]/);
    expect(p.join('\n')).toMatch(/regex\[0\]\.pattern: is not a valid regular expression/);
  });

  it('refuses the hash style without masking.hash_key', () => {
    const raw = { ...base, connections: [], masking_profiles: { pii: { style: 'hash' } } };
    expect(problems(raw)).toEqual(['masking_profiles.pii.style: the hash style needs masking.hash_key']);
    expect(problems({ ...raw, masking: { hash_key: 'a-key-of-32-characters-at-least!' } })).toEqual([]);
  });

  it.each(['(a+)+', '(a|a)*', '(\\w+\\s?)*', '(a{1,9}){1,9}', '((ab)*c)+', '(x+x+)+y', '(a)\\1', '(?<n>a)\\k<n>'])('refuses %s', (p) => {
    expect(backtrackingRisk(p)).not.toBeNull();
  });

  it.each(['ACME-[0-9]{6}', '(?:\\d[ -]?){12,18}', '[a-z]+@[a-z]+\\.com', '(ab)+', '(a|b)', '\\(a+\\)+', '[(a+)+]'])('accepts %s', (p) => {
    expect(backtrackingRisk(p)).toBeNull();
  });
});
