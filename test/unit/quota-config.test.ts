import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../server/config/load.js';

const BASE = { identity: { issuer: 'https://idp.example.com', audience: 'sluice', cli_client_id: 'sluice-cli' } };

function problems(quotas: unknown): string {
  try {
    validateConfig({ ...BASE, quotas });
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}

describe('quotas config', () => {
  it('takes the rules of the example, with per defaulting to user', () => {
    const config = validateConfig({ ...BASE, quotas: [{ name: 'agents', groups: ['ml-eng'], requests_per_minute: 100, tokens_per_day: 2_000_000, tokens_per_month: 40_000_000 }] });
    expect(config.quotas).toEqual([{ name: 'agents', groups: ['ml-eng'], per: 'user', requests_per_minute: 100, tokens_per_day: 2_000_000, tokens_per_month: 40_000_000 }]);
    expect(validateConfig(BASE).quotas).toEqual([]);
  });

  it('refuses a rule without a limit, a repeated name, an unknown key and a limit that is not a positive integer', () => {
    expect(problems([{ name: 'empty', users: ['alice'] }])).toMatch(/at least one of requests_per_minute/);
    expect(problems([{ name: 'a', requests_per_minute: 1 }, { name: 'a', tokens_per_day: 1 }])).toMatch(/duplicate quota name "a"/);
    expect(problems([{ name: 'a', requests_per_minute: 1, concurrent_stream: 2 }])).toMatch(/concurrent_stream/);
    expect(problems([{ name: 'a', requests_per_minute: 0 }])).not.toBe('');
    expect(problems([{ name: 'a', per: 'model', requests_per_minute: 1 }])).not.toBe('');
  });
});
