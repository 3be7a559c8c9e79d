/**
 * A conservative static check for regular expressions prone to catastrophic backtracking. It refuses:
 * - a group repeated more than once (`*`, `+`, `{n,}`, `{n,m}` with m > 1) whose body holds a repeated
 *   quantifier (`*`, `+`, `{n,}`, `{n,m}` with m > 1) or an alternation: `(a+)+`, `(a|a)*`, `(\w+\s?)*`,
 *   `(a{1,9}){1,9}`;
 * - back-references (`\1`, `\k<name>`), whose cost V8 cannot bound.
 * Safe patterns sometimes fall under it (`(a|b)+`): write them with a class (`[ab]+`) instead.
 */
export function backtrackingRisk(pattern: string): string | null {
  interface Group {
    repeatsInside: boolean;
    alternation: boolean;
  }
  const stack: Group[] = [{ repeatsInside: false, alternation: false }];
  let i = 0;
  while (i < pattern.length) {
    const ch = pattern[i]!;
    if (ch === '\\') {
      const next = pattern[i + 1] ?? '';
      if (/[1-9]/.test(next) || next === 'k') return `back-reference "\\${next}" is not allowed`;
      i += 2;
      continue;
    }
    if (ch === '[') {
      i = skipClass(pattern, i);
      continue;
    }
    if (ch === '(') {
      stack.push({ repeatsInside: false, alternation: false });
      i++;
      continue;
    }
    if (ch === '|') {
      stack[stack.length - 1]!.alternation = true;
      i++;
      continue;
    }
    if (ch === ')') {
      const group = stack.pop();
      if (group === undefined || stack.length === 0) return 'unbalanced parenthesis';
      const q = quantifierAt(pattern, i + 1);
      if (q !== null && q.repeats && (group.repeatsInside || group.alternation)) {
        return `nested quantifier: the group ending at offset ${i} is repeated and ${
          group.repeatsInside ? 'contains a repeated quantifier' : 'contains an alternation'
        } (catastrophic backtracking)`;
      }
      const parent = stack[stack.length - 1]!;
      // A group that repeats, or holds something that repeats, makes its enclosing group "repeating inside".
      if (group.repeatsInside || (q !== null && q.repeats)) parent.repeatsInside = true;
      i = q === null ? i + 1 : q.end;
      continue;
    }
    const q = quantifierAt(pattern, i);
    if (q !== null) {
      if (q.repeats) stack[stack.length - 1]!.repeatsInside = true;
      i = q.end;
      continue;
    }
    i++;
  }
  return stack.length === 1 ? null : 'unbalanced parenthesis';
}

/** The quantifier starting at `at` (with its lazy `?`), or null. */
function quantifierAt(pattern: string, at: number): { repeats: boolean; end: number } | null {
  const ch = pattern[at];
  let end: number;
  let repeats: boolean;
  if (ch === '*' || ch === '+') {
    repeats = true;
    end = at + 1;
  } else if (ch === '?') {
    repeats = false;
    end = at + 1;
  } else if (ch === '{') {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(at));
    if (m === null) return null;
    const upper = m[2] === undefined ? Number(m[1]) : m[3] === '' ? Infinity : Number(m[3]);
    repeats = upper > 1;
    end = at + m[0].length;
  } else {
    return null;
  }
  if (pattern[end] === '?') end++;
  return { repeats, end };
}

/** The index just past the character class opening at `at`. */
function skipClass(pattern: string, at: number): number {
  let i = at + 1;
  if (pattern[i] === '^') i++;
  if (pattern[i] === ']') i++;
  while (i < pattern.length && pattern[i] !== ']') i += pattern[i] === '\\' ? 2 : 1;
  return i + 1;
}
