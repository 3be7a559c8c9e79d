import type { z } from 'zod';
import { SluiceError } from '../shared/errors.js';
import { plainIssueMessage } from '../shared/issue-text.js';

/** `maskedOk` → `--masked-ok`: commander hands flags over camel-cased. */
function flagName(key: PropertyKey): string {
  return `--${String(key).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * A failed parse of command-line input as ERR_USAGE in the user's terms: `--format must be one of har,
 * jsonl, asciicast`, one problem per line. `subject` names what a parse of a single value was about (an
 * argument such as `SESSION`); a message a schema wrote starting with the flag is kept as it is.
 */
export function usageError(error: z.ZodError, subject?: string): SluiceError {
  const lines = error.issues.map((issue) => {
    const text = plainIssueMessage(issue);
    if (text.startsWith('--')) return text;
    const key = issue.path[0];
    const who = key === undefined ? subject : flagName(key);
    return who === undefined ? text : `${who} ${text}`;
  });
  return new SluiceError('ERR_USAGE', { message: [...new Set(lines)].join('\n') });
}
