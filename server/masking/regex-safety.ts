import RE2 from 're2';

/**
 * Configured regular expressions (masking `regex` rules, CEL `matches()`) run on RE2, whose matching
 * time is linear in the text whatever the pattern: `a*a*a*a*b` or `\d+\s?\d+\s?\d+(?:EUR|USD)` cost
 * V8's backtracking engine seconds on a few hundred characters of a request body, and no static check
 * of a pattern catches every such case. The syntax is RE2's: no look-around, no back-references.
 */
export type LinearRegExp = RegExp;

/** Compiles `source` for RE2 with JavaScript `flags` (of `gimsuyd`); throws a plain Error saying why RE2 refuses it. */
export function linearRegExp(source: string, flags = ''): LinearRegExp {
  try {
    return new RE2(source, flags);
  } catch (err) {
    throw new Error(explainRefusal(source, (err as Error).message), { cause: err });
  }
}

/** Why RE2 cannot run `source`, or null when it can. */
export function linearRegExpProblem(source: string, flags = ''): string | null {
  try {
    linearRegExp(source, flags);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** RE2's message, with the JavaScript-only constructs it refuses named plainly. */
function explainRefusal(source: string, message: string): string {
  const reason = message.replace(/^SyntaxError:\s*/, '').replace(/^Invalid regular expression:\s*/, '');
  if (/\(\?<?[=!]/.test(source)) return `${reason} (look-ahead and look-behind are not supported: RE2 matches in linear time)`;
  if (/\\[1-9]|\\k</.test(source)) return `${reason} (back-references are not supported: RE2 matches in linear time)`;
  return reason;
}
