import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRORS, SluiceError } from '../../shared/errors.js';

const root = new URL('../../', import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(root, dir, name);
    if (statSync(path).isDirectory()) return sources(join(dir, name));
    return /\.tsx?$/.test(name) ? [path] : [];
  });
}

describe('the error table', () => {
  const codes = Object.keys(ERRORS);
  const code = [...sources('cli'), ...sources('server'), ...sources('shared')]
    .filter((f) => !f.endsWith('shared/errors.ts'))
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
  const readme = readFileSync(join(root, 'README.md'), 'utf8');

  it.each(codes)('%s is raised somewhere in the code', (c) => {
    expect(code.includes(`'${c}'`), `${c} appears in no source file outside shared/errors.ts`).toBe(true);
  });

  it.each(codes)('%s is documented in the README error table', (c) => {
    expect(readme).toMatch(new RegExp(`\\|\\s*\`${c}\`\\s*\\|`));
  });

  it('gives every code a distinct, stable shape', () => {
    const err = new SluiceError('ERR_TOKEN_EXPIRED');
    expect(err.status).toBe(401);
    expect(err.toJSON()).toEqual({ error: { code: 'ERR_TOKEN_EXPIRED', message: 'The token has expired' } });
    for (const c of codes) expect(c).toMatch(/^ERR_[A-Z0-9_]+$/);
  });
});
