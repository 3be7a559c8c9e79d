import { EvaluationError } from '@marcbachmann/cel-js';
import { linearRegExp, linearRegExpProblem } from '../masking/regex-safety.js';

/**
 * CEL's `matches()` on RE2. The CEL library runs `string.matches(string)` on JavaScript's backtracking
 * engine, where `request.json.prompt.matches("a*a*a*a*b")` costs seconds on a few hundred characters of a
 * request body (and CEL specifies RE2 syntax anyway). The library lets a built-in overload be neither
 * replaced nor removed, so each parsed `matches` call is pointed at this overload, registered under
 * its own name, before the expression is type-checked (which binds each call to its overload).
 */
const LINEAR_MATCHES = 'matches_re2';

/** The overload `createPolicyEnvironment` registers. */
export const LINEAR_MATCHES_SIGNATURE = `string.${LINEAR_MATCHES}(string): bool`;

/** Compiled patterns kept per environment; a policy set names few, a dynamic pattern may name many. */
const PATTERN_CACHE_MAX = 256;

/** The overload's implementation: RE2, a pattern compiled once per environment (per config load). */
export function linearMatches(): (text: string, pattern: string) => boolean {
  const compiled = new Map<string, RegExp>();
  return (text, pattern) => {
    let re = compiled.get(pattern);
    if (re === undefined) {
      try {
        re = linearRegExp(pattern);
      } catch (err) {
        // An evaluation error, not a "no": the policy stage refuses the request.
        throw new EvaluationError(`matches(): the pattern cannot run on RE2: ${(err as Error).message}`);
      }
      if (compiled.size >= PATTERN_CACHE_MAX) compiled.clear();
      compiled.set(pattern, re);
    }
    return re.test(text);
  };
}

/** The parts of a parsed expression this module reads and writes (the library's AST nodes). */
interface CelNode {
  op: string;
  args: unknown;
  start: number;
  readonly meta?: { readonly alternate?: unknown; readonly macro?: unknown };
}

/** What `Environment.parse` returns, as far as this module needs it. */
interface ParsedCel {
  readonly ast: unknown;
}

/**
 * Points every `matches` call of a parsed expression, not yet checked, at the RE2 overload, and refuses
 * at load a literal pattern RE2 cannot run (look-around, back-references). Returns the problem and its
 * offset in the source, or null.
 */
export function useLinearMatches(parsed: ParsedCel): { message: string; offset: number } | null {
  const calls = matchesCalls(parsed.ast);
  if (calls.length === 0) return null;
  for (const call of calls) {
    const pattern = (call.args as unknown[])[2];
    const first = Array.isArray(pattern) ? (pattern[0] as CelNode | undefined) : undefined;
    if (first?.op === 'value' && typeof first.args === 'string') {
      const problem = linearRegExpProblem(first.args);
      if (problem !== null) return { message: `matches(): the pattern cannot run on RE2: ${problem}`, offset: first.start };
    }
  }
  for (const call of calls) (call.args as unknown[])[0] = LINEAR_MATCHES;
  return null;
}

function isNode(value: unknown): value is CelNode {
  return typeof value === 'object' && value !== null && typeof (value as CelNode).op === 'string' && 'args' in value;
}

/**
 * Every method call named `matches`, macros' expansions included (`list.exists(x, x.matches(…))`). Walks
 * nodes' arguments and expansions only, never what the checker attached (overload tables, types).
 */
function matchesCalls(root: unknown): CelNode[] {
  const found: CelNode[] = [];
  const seen = new Set<object>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== 'object' || value === null || seen.has(value)) continue;
    seen.add(value);
    if (isNode(value)) {
      const args = value.args;
      if (value.op === 'rcall' && Array.isArray(args) && args[0] === 'matches') found.push(value);
      stack.push(args, value.meta?.alternate, value.meta?.macro);
    } else if (Array.isArray(value)) {
      stack.push(...value);
    } else if (Object.getPrototypeOf(value) === Object.prototype) {
      stack.push(...Object.values(value));
    }
  }
  return found;
}
