import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCliInProcess, type InProcessResult } from '../helpers/cli-in-process.js';
import { tempDir } from '../helpers/temp-dir.js';

/** The warnings `--check` gives about policies (it may warn about other things, such as an unreachable IdP). */
function policyWarnings(stderr: string): string {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('sluice: warning: policies['))
    .map((l) => `${l}\n`)
    .join('');
}

function sluice(args: string[]): Promise<InProcessResult> {
  return runCliInProcess(args);
}

async function files(entries: Record<string, string>): Promise<Record<string, string>> {
  const dir = await tempDir('sluice-check-');
  const paths: Record<string, string> = {};
  for (const [name, text] of Object.entries(entries)) {
    paths[name] = join(dir, name);
    await writeFile(paths[name], text);
  }
  return paths;
}

function config(policies: string): string {
  return `identity:
  issuer: https://idp.example.com
  audience: sluice
  cli_client_id: sluice-cli
policies:
${policies}`;
}

describe('sluice serve --check on policies', () => {
  it('warns about a rule reading a field no sample request has, with the closest name, and exits 0', async () => {
    const { yaml } = await files({
      yaml: config(`  - name: cap
    when: request.json.max_token > 1000
    action: deny
  - name: fine
    when: has(request.json.model) && request.json.messages.exists(m, m.role == "system") && request.json.?max_tokens.orValue(0) > 10
    action: review
    reviewers: [ml-leads]
  - name: effort
    when: request.json.reasoning.efort == "high"
    action: deny
`),
    });
    const r = await sluice(['serve', '--config', yaml!, '--check']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${yaml}: valid (0 connections)\n`);
    expect(policyWarnings(r.stderr)).toBe(
      'sluice: warning: policies[0] "cap": request.json.max_token is in no sample request (did you mean request.json.max_tokens?)\n' +
        'sluice: warning: policies[2] "effort": request.json.reasoning.efort is in no sample request (did you mean request.json.reasoning.effort?)\n',
    );
  });

  it('checks rules against --sample bodies too', async () => {
    const { yaml, sample, notJson } = await files({
      yaml: config(`  - name: tenant
    when: request.json.tenant == "acme"
    action: deny
`),
      sample: JSON.stringify({ model: 'x', tenant: 'acme' }),
      notJson: 'tenant=acme',
    });
    const without = await sluice(['serve', '--config', yaml!, '--check']);
    expect(policyWarnings(without.stderr)).toBe('sluice: warning: policies[0] "tenant": request.json.tenant is in no sample request\n');
    const withSample = await sluice(['serve', '--config', yaml!, '--check', '--sample', sample!]);
    expect({ code: withSample.code, warnings: policyWarnings(withSample.stderr) }).toEqual({ code: 0, warnings: '' });

    const bad = await sluice(['serve', '--config', yaml!, '--check', '--sample', notJson!]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--sample .*notJson is not a JSON document: .*\(ERR_USAGE\)/);
    const alone = await sluice(['serve', '--config', yaml!, '--sample', sample!]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain('--sample is used with --check (ERR_USAGE)');
  });

  it('fails a rule with a CEL type error (exit 2), naming the rule and the position', async () => {
    const { yaml } = await files({
      yaml: config(`  - name: size
    when: request.size > "1000"
    action: deny
  - name: field
    when: request.jsn.model == "gpt-5"
    action: deny
`),
    });
    const r = await sluice(['serve', '--config', yaml!, '--check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ERR_CONFIG_INVALID');
    expect(r.stderr).toContain('policies[0].when: no such overload: int > string at line 1, column 1');
    expect(r.stderr).toContain('policies[1].when: No such key: jsn at line 1');
  });
});
