import { describe, expect, it } from 'vitest';
import { parseConfigText, validateConfig } from '../../server/config/load.js';
import { SluiceError } from '../../shared/errors.js';

const base = `
identity:
  issuer: https://idp.example.com
  audience: sluice
  cli_client_id: sluice-cli
`;

function problemsOf(fn: () => unknown): { code: string; problems: string[]; message: string } {
  try {
    fn();
  } catch (err) {
    const e = err as SluiceError;
    return { code: e.code, problems: (e.details?.problems as string[]) ?? [], message: e.message };
  }
  throw new Error('expected the config to be rejected');
}

describe('config', () => {
  it('applies defaults to a minimal file and freezes the result', () => {
    const cfg = parseConfigText(base);
    expect(cfg.listen).toBe('127.0.0.1:7443');
    expect(cfg.identity.groups_claim).toBe('groups');
    expect(cfg.identity.algorithms).not.toContain('HS256');
    expect(Object.isFrozen(cfg.identity)).toBe(true);
  });

  it('lists every problem with its path', () => {
    const text = `${base}
roles:
  admin: platform
connections:
  - name: llm
    type: http
    upstream: http://127.0.0.1:8000
    allow_groups: [ml-eng]
  - name: Bad Name
    type: http
    upstream: not a url
    allow_groups: []
  - name: db
    type: smtp
    upstream: x
    allow_groups: [a]
`;
    const { code, problems, message } = problemsOf(() => parseConfigText(text, { source: 'sluice.yaml' }));
    expect(code).toBe('ERR_CONFIG_INVALID');
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^roles\.admin: /),
        expect.stringMatching(/^connections\[1\]\.name: must be lower-case/),
        'connections[1].upstream: must be an http:// or https:// URL',
        'connections[1].allow_groups: must name at least one group',
        expect.stringMatching(/^connections\[2\]\.type: /),
      ]),
    );
    expect(message).toMatch(/^sluice\.yaml has \d+ problems:/);
  });

  it('names a missing required section and rejects unknown keys', () => {
    const { problems } = problemsOf(() => parseConfigText('listen: 127.0.0.1:1\nlisten_port: 3\n'));
    expect(problems).toContain('identity: is required');
    expect(problems.some((p) => p.includes('listen_port'))).toBe(true);
  });

  it('rejects duplicate connection names', () => {
    const conn = '  - {name: llm, type: http, upstream: "http://127.0.0.1:1", allow_groups: [a]}\n';
    const { problems } = problemsOf(() => parseConfigText(`${base}connections:\n${conn}${conn}`));
    expect(problems).toEqual(['connections[1].name: duplicate connection name "llm"']);
  });

  it('expands ${env:NAME} inside values and names every missing variable', () => {
    const text = `${base}connections:
  - name: llm
    type: http
    upstream: \${env:UPSTREAM}
    headers: { authorization: "Bearer \${env:KEY}" }
    allow_groups: [ml-eng]
`;
    const cfg = parseConfigText(text, { env: { UPSTREAM: 'http://127.0.0.1:9000', KEY: 'sk-secret' } });
    const conn = cfg.connections[0]!;
    expect(conn.type === 'http' && conn.headers.authorization).toBe('Bearer sk-secret');
    const err = problemsOf(() => parseConfigText(`${text}storage: { master_key: "\${env:MASTER}" }\n`, { env: {} }));
    expect(err.code).toBe('ERR_CONFIG_ENV_MISSING');
    expect(err.message).toContain('KEY, MASTER, UPSTREAM');
  });

  it('never echoes a value in a problem, so secrets do not reach logs', () => {
    const { message, problems } = problemsOf(() =>
      validateConfig(
        { identity: { issuer: 'https://i', audience: 'a', cli_client_id: 'c' }, connections: [{ name: 'x', type: 'http', upstream: 'sk-live-SECRETVALUE', allow_groups: ['g'] }] },
      ),
    );
    expect(problems).toEqual(['connections[0].upstream: must be an http:// or https:// URL']);
    expect(message).not.toContain('SECRETVALUE');
  });

  it('reports YAML syntax errors with a line', () => {
    const { code, message } = problemsOf(() => parseConfigText('identity: [\n  issuer: x\n', { source: 'f.yaml' }));
    expect(code).toBe('ERR_CONFIG_INVALID');
    expect(message).toMatch(/f\.yaml: not valid YAML at line \d+/);
  });
});
