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

  it('reports a bounded duration that is no duration as a problem, not a crash', () => {
    const text = `${base}
replica:
  heartbeat_interval: soon
audit:
  flush_interval: 2 seconds
`;
    const { code, problems } = problemsOf(() => parseConfigText(text, { source: 'sluice.yaml' }));
    expect(code).toBe('ERR_CONFIG_INVALID');
    expect(problems.sort()).toEqual([
      'audit.flush_interval: must be a duration such as 500ms, 30s, 10m, 2h or 7d',
      'replica.heartbeat_interval: must be a duration such as 500ms, 30s, 10m, 2h or 7d',
    ]);
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

  it('reports YAML syntax errors with a line, a column and the reason', () => {
    const { code, message } = problemsOf(() => parseConfigText('identity: [\n  issuer: x\n', { source: 'f.yaml' }));
    expect(code).toBe('ERR_CONFIG_INVALID');
    expect(message).toMatch(/^f\.yaml: not valid YAML at line 3, column 1: Flow sequence in block collection must be sufficiently indented and end with a \]\n/);
    // The lines around the error come with it, so the reader sees where without opening the file.
    expect(message).toContain('issuer: x');
    const nested = problemsOf(() => parseConfigText(`${base}listen: a: b\n`, { source: 'f.yaml' }));
    expect(nested.message).toMatch(/^f\.yaml: not valid YAML at line 6, column 9: Nested mappings are not allowed in compact mappings/);
  });

  it('suggests the key a typo was meant to be, and gives the line and column of each problem', () => {
    const text = `${base}lisen: 127.0.0.1:7443
connections:
  - name: llm
    type: http
    upstream: http://127.0.0.1:8000
    allowed_groups: [ml-eng]
    record: { request_body: maybe }
`;
    const { problems, message } = problemsOf(() => parseConfigText(text, { source: 'sluice.yaml' }));
    expect(problems).toEqual(
      expect.arrayContaining([
        'lisen: unknown key (did you mean "listen"?)',
        'connections[0].allowed_groups: unknown key (did you mean "allow_groups"?)',
        'connections[0].allow_groups: is required',
        'connections[0].record.request_body: must be one of masked, raw, none',
      ]),
    );
    // file:line:column as compilers print them, in the order of the file.
    expect(message.split('\n').slice(1)).toEqual([
      '  sluice.yaml:6:1: lisen: unknown key (did you mean "listen"?)',
      '  sluice.yaml:8:5: connections[0].allow_groups: is required',
      '  sluice.yaml:11:5: connections[0].allowed_groups: unknown key (did you mean "allow_groups"?)',
      '  sluice.yaml:12:15: connections[0].record.request_body: must be one of masked, raw, none',
    ]);
    expect(message).not.toMatch(/Invalid option|Unrecognized key|expected one of/);
  });

  it('lists the keys a section takes when an unknown key is like none of them', () => {
    const { problems } = problemsOf(() => parseConfigText(`${base}  colour: blue\n`));
    expect(problems).toEqual(['identity.colour: unknown key (this section takes: issuer, audience, cli_client_id, groups_claim, algorithms, clock_tolerance)']);
  });
});
