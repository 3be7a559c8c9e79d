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
    [['sessions', 'list', '--status', 'done'], '--status must be one of open, closed, interrupted'],
    [['sessions', 'list', '--limit', 'many'], '--limit must be a number'],
    [['sessions', 'list', '--limit', '0'], '--limit must be at least 1'],
    [['sessions', 'tail', '--interval', '5'], '--interval must be a duration such as 500ms or 2s'],
    [['sessions', 'show', 'abc'], 'ID must be a session id such as ses_3f9a…'],
    [['replay', 'abc'], 'SESSION must be a session id such as ses_3f9a…'],
    [['replay', SESSION, '--speed', '99'], '--speed must be 0.25 to 16'],
    [['replay', SESSION, '--masked-ok'], '--connection and --masked-ok go with --resend'],
  ])('sluice %j', async (args, said) => {
    const r = await sluice(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`sluice: ${said} (ERR_USAGE)\n`);
  });
});
