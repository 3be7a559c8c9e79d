import { describe, expect, it } from 'vitest';
import { runCliInProcess, type InProcessResult } from '../helpers/cli-in-process.js';

function sluice(args: string[]): Promise<InProcessResult> {
  // No login and no gateway: each of these must be refused on its flags alone, before anything is fetched.
  return runCliInProcess(args, { XDG_CONFIG_HOME: '/nonexistent', SLUICE_TOKEN_STORE: 'file' });
}

const SESSION = `ses_${'a'.repeat(32)}`;

describe('flag errors speak of flags', () => {
  it.each([
    [['sessions', 'export', SESSION, '--format', 'zip'], '--format must be one of har, jsonl, asciicast'],
    [['audit', 'verify', '--all', '--key-id', 'a b'], '--key-id must be 1-64 letters, digits, ".", "_" or "-"'],
    [['sessions', 'list', '--status', 'done'], '--status must be one of open, closed, interrupted'],
    [['sessions', 'list', '--limit', 'many'], '--limit must be a number'],
    [['sessions', 'list', '--limit', '0'], '--limit must be at least 1'],
    [['sessions', 'tail', '--interval', '5'], '--interval must be a duration such as 500ms or 2s'],
    [['sessions', 'show', 'abc'], 'ID must be a session id such as ses_3f9a…'],
    [['replay', 'abc'], 'SESSION must be a session id such as ses_3f9a…'],
    [['replay', SESSION, '--speed', '99'], '--speed must be 0.25 to 16'],
    [['replay', SESSION, '--masked-ok'], '--connection and --masked-ok go with --resend'],
    [['review', 'list', '--status', 'done'], '--status must be one of pending, approved, rejected, expired, abandoned, all'],
    [['review', 'list', '--kind', 'held'], '--kind must be one of request, grant'],
    [['review', 'list', '--limit', '0'], '--limit must be at least 1'],
    [['review', 'show', 'abc'], 'ID must be a review id such as r_3f9a…'],
    [['review', 'approve', 'r_abcdef', '--reason', ' '], '--reason must not be empty'],
    [['admin', 'rotate-key', '--id', 'a/b'], '--id must be 1-64 letters, digits, ".", "_" or "-"'],
    [['admin', 'rotate-key', '--current', 'default', 'x/y'], '--current must be 1-64 letters, digits, ".", "_" or "-"'],
    [['login', '--gateway', ''], '--gateway must not be empty'],
    [['login', '--client-id', 'ci-bot'], '--client-id and --client-secret-file are only used with --client-credentials'],
    [['access', 'request', 'llm', '--for', '2 hours', '--reason', 'eval'], '--for must be a duration such as 30m, 2h or 1d'],
    [['access', 'request', 'llm', '--for', '2h', '--reason', ' '], '--reason is required: reviewers decide on it'],
    [['connect', 'llm', '--port', '99999'], '--port must be a number from 0 to 65535, got "99999"'],
    [['connect', 'llm', '--socket', '/tmp/s', '--port', '8080'], '--socket and --port exclude each other'],
    [['run', 'llm', '--port', 'x', '--', 'true'], '--port must be a number from 0 to 65535, got "x"'],
  ])('sluice %j', async (args, said) => {
    const r = await sluice(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`sluice: ${said} (ERR_USAGE)\n`);
  });
});

describe('flag errors commander catches', () => {
  // `logout` has no flag with a value: what can be wrong is caught before it runs, in commander's words.
  it('sluice logout --json=yes names the flag', async () => {
    const r = await sluice(['logout', '--json=yes']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("error: unknown option '--json=yes'\n(run with --help for usage)\n");
  });
});
