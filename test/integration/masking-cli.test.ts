import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runCliInProcess, type InProcessResult } from '../helpers/cli-in-process.js';
import { openAiChatStream, streamedText } from '../fixtures/masking/sse-streams.js';

const configPath = fileURLToPath(new URL('../fixtures/masking/sluice.yaml', import.meta.url));

function sluice(args: string[]): Promise<InProcessResult> {
  return runCliInProcess(args);
}

function inputFile(name: string, content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-mask-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

describe('sluice mask test', () => {
  it('masks a text file and prints counts per rule on stderr, never the values', async () => {
    const file = inputFile('a.txt', 'Mail ann@example.org or support@example.com, SSN 123-45-6789.\n');
    const r = await sluice(['mask', 'test', '--mask-profile', 'pii', '--config', configPath, file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('Mail [EMAIL] or support@example.com, SSN [SSN].\n');
    expect(r.stderr).toBe('text: 2 replaced\nemail\tdetector:email\t1\nssn\tdetector:ssn\t1\n');
  });

  it('reads SSE and prints JSON with --json', async () => {
    const file = inputFile('s.sse', openAiChatStream(['call +1 415 ', '555 2671 now']));
    const r = await sluice(['mask', 'test', '--mask-profile', 'pii', '--config', configPath, '--json', file]);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { format: string; output: string; summary: unknown };
    expect(result.format).toBe('sse');
    expect(streamedText(result.output)).toBe('call [PHONE] now');
    expect(result.summary).toEqual([{ entity: 'phone', rule: 'detector:phone', count: 1 }]);
  });

  it('reads NDJSON, guessed or named with --format ndjson', async () => {
    const file = inputFile('s.ndjson', '{"message":{"content":"mail ann@"}}\n{"message":{"content":"example.org now"}}\n');
    for (const args of [[], ['--format', 'ndjson']]) {
      const r = await sluice(['mask', 'test', '--mask-profile', 'pii', '--config', configPath, '--json', ...args, file]);
      expect(r.code).toBe(0);
      const result = JSON.parse(r.stdout) as { format: string; output: string };
      expect(result.format).toBe('ndjson');
      expect(result.output).not.toMatch(/ann@|example\.org/);
    }
  });

  it('exits 2 for an unknown profile and 7 when the profile would refuse the input', async () => {
    const file = inputFile('s.sse', 'data: {"kind":"mystery"}\n\n');
    const unknown = await sluice(['mask', 'test', '--mask-profile', 'nope', '--config', configPath, file]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/No masking profile named "nope".*\(ERR_USAGE\)/s);
    const blocked = await sluice(['mask', 'test', '--config', configPath, '--mask-profile', 'strict', file]);
    expect(blocked.code).toBe(7);
    expect(blocked.stderr).toMatch(/\(unknown_stream: block\) \(ERR_MASKING_BLOCKED\)/);
  });

  it('takes the masking profile as --mask-profile; --profile stays the login profile and says so', async () => {
    const file = inputFile('a.txt', 'Mail ann@example.org\n');
    const loginProfile = await sluice(['mask', 'test', '--profile', 'pii', '--config', configPath, file]);
    expect(loginProfile.code).toBe(2);
    expect(loginProfile.stderr).toBe(
      'sluice: --mask-profile NAME is required: --profile pii selects the saved login profile; to test the masking profile, pass --mask-profile pii (ERR_USAGE)\n',
    );
    // Both at once: the global --profile is the login profile, as for every command, and does not get in the way.
    const both = await sluice(['--profile', 'ops', 'mask', 'test', '--mask-profile', 'pii', '--config', configPath, file]);
    expect({ code: both.code, stdout: both.stdout }).toEqual({ code: 0, stdout: 'Mail [EMAIL]\n' });
    const none = await sluice(['mask', 'test', '--config', configPath, file]);
    expect(none.stderr).toBe('sluice: --mask-profile NAME is required (ERR_USAGE)\n');
  });

  it('needs only the masking sections: secrets and mistakes elsewhere in the file do not stop a test', async () => {
    const config = inputFile(
      'sluice.yaml',
      `identity:
  issuer: \${env:SLUICE_TEST_UNSET_ISSUER}
  audience: sluice
storage:
  master_key: \${env:SLUICE_TEST_UNSET_MASTER_KEY}
connections:
  - name: llm
    type: http
    upstream: http://127.0.0.1:9
    headers: { authorization: "Bearer \${env:SLUICE_TEST_UNSET_UPSTREAM_KEY}" }
    allowed_groups: [ml-eng]
masking_profiles:
  pii: { detectors: [email] }
`,
    );
    const file = inputFile('a.txt', 'Mail ann@example.org\n');
    const r = await sluice(['mask', 'test', '--mask-profile', 'pii', '--config', config, file]);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: 'Mail [EMAIL]\n', stderr: 'text: 1 replaced\nemail\tdetector:email\t1\n' });
    // What masking itself reads is still checked, with the file's line.
    const broken = inputFile('broken.yaml', 'masking_profiles:\n  pii: { detectors: [emial] }\n');
    const bad = await sluice(['mask', 'test', '--mask-profile', 'pii', '--config', broken, file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      `sluice: ${broken} has 1 problem: (ERR_CONFIG_INVALID)\n  ${broken}:2:22: masking_profiles.pii.detectors[0]: must be one of email, phone, credit_card, ssn, iban, ip_address, secret\n`,
    );
  });
});
