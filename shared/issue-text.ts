import type { z } from 'zod';

/** What a value should have been, in words. */
const KIND: Readonly<Record<string, string>> = { array: 'a list', object: 'a mapping', record: 'a mapping', string: 'a string', number: 'a number', int: 'a whole number', boolean: 'true or false' };

/**
 * zod's own wording ("Invalid input: expected array, received string") said as the rest of sluice says
 * things; a message a schema wrote itself is kept. Never the offending value: it may be a secret.
 */
export function plainIssueMessage(issue: z.core.$ZodIssue): string {
  const own = !/^(Invalid input|Invalid option|Too small|Too big|Invalid discriminator)/.test(issue.message);
  if (own) return issue.message;
  switch (issue.code) {
    case 'invalid_type':
      return /received undefined/.test(issue.message) ? 'is required' : `must be ${KIND[issue.expected] ?? issue.expected}`;
    case 'invalid_value':
      return issue.values.length === 1 ? `must be ${String(issue.values[0])}` : `must be one of ${issue.values.map(String).join(', ')}`;
    case 'invalid_union': {
      const options = (issue as { options?: unknown[] }).options;
      return Array.isArray(options) ? `must be one of ${options.map(String).join(', ')}` : 'matches none of the accepted forms';
    }
    case 'too_small':
      return bound('at least', 'more than', issue.origin, Number(issue.minimum), issue.inclusive ?? true);
    case 'too_big':
      return bound('at most', 'less than', issue.origin, Number(issue.maximum), issue.inclusive ?? true);
    default:
      return issue.message;
  }
}

function bound(inclusiveWord: string, exclusiveWord: string, origin: string, limit: number, inclusive: boolean): string {
  const word = inclusive ? inclusiveWord : exclusiveWord;
  if (origin === 'string') return limit === 1 && inclusive && inclusiveWord === 'at least' ? 'must not be empty' : `must be ${word} ${limit} characters`;
  if (origin === 'array' || origin === 'set') return `must have ${word} ${limit} item${limit === 1 ? '' : 's'}`;
  return `must be ${word} ${limit}`;
}
