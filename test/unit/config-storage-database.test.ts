import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import type { SluiceError } from '../../shared/errors.js';

const base = `
identity:
  issuer: https://idp.example.com
  audience: sluice
  cli_client_id: sluice-cli
`;

function refusal(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    return err as SluiceError;
  }
  throw new Error('expected the config to be rejected');
}

describe('storage.database', () => {
  it('is absent by default (SQLite under storage.dir), with a pool of 10 for when it is set', () => {
    const cfg = parseConfigText(base);
    expect(cfg.storage.database).toBeUndefined();
    expect(cfg.storage.database_pool).toBe(10);
  });

  it('takes its URL, password included, from the environment as other secrets', () => {
    const url = 'postgres://sluice:s3cret@db.internal:5432/sluice?sslmode=require';
    const cfg = parseConfigText(`${base}storage:\n  database: \${env:SLUICE_DATABASE_URL}\n  database_pool: 25\n`, { env: { SLUICE_DATABASE_URL: url } });
    expect(cfg.storage.database).toBe(url);
    expect(cfg.storage.database_pool).toBe(25);
    expect(refusal(() => parseConfigText(`${base}storage:\n  database: \${env:SLUICE_DATABASE_URL}\n`, { env: {} })).code).toBe('ERR_CONFIG_ENV_MISSING');
  });

  it('refuses a URL of another database, or none, without echoing it', () => {
    for (const bad of ['mysql://root:hunter2@db/sluice', 'hunter2', 'postgres://root:hunter2@[db/sluice']) {
      const err = refusal(() => parseConfigText(`${base}storage:\n  database: "${bad}"\n`));
      expect(err.code).toBe('ERR_CONFIG_INVALID');
      expect(err.message).toMatch(/storage\.database: must be a postgres:\/\/ URL/);
      expect(err.message).not.toContain('hunter2');
    }
    expect(refusal(() => parseConfigText(`${base}storage:\n  database_pool: 0\n`)).code).toBe('ERR_CONFIG_INVALID');
  });
});
