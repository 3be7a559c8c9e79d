import { Environment, EvaluationError, ParseError } from '@marcbachmann/cel-js';
import { LINEAR_MATCHES_SIGNATURE, linearMatches, useLinearMatches } from './cel-regex.js';

/** The variables a policy's `when` sees; every other name is an error at load. */
export const POLICY_VARIABLES = ['identity', 'connection', 'request', 'session', 'usage', 'now'] as const;

/** What a `when` expression is evaluated against; built per request by `policyInput`. */
export interface PolicyActivation {
  readonly identity: Readonly<Record<string, unknown>>;
  readonly connection: Readonly<Record<string, unknown>>;
  readonly request: Readonly<Record<string, unknown>>;
  readonly session: Readonly<Record<string, unknown>>;
  /** The caller's counts in the quota windows (`POLICY_SCHEMAS.usage`), read from the store only when a rule names `usage`. */
  readonly usage: Readonly<Record<string, unknown>>;
  readonly now: Date;
}

/** A compiled `when` expression: evaluate it per request, never parse it again. */
export interface CelPredicate {
  readonly source: string;
  /** The expression's value; throws the library's EvaluationError when it fails. */
  evaluate(activation: PolicyActivation): unknown;
}

/** Why an expression did not compile, with its 1-based position in the source. */
export interface CelCompileProblem {
  readonly message: string;
  readonly line: number;
  readonly column: number;
}

/**
 * The two environments rules are compiled in: `checking` declares each variable's fields and types, so a
 * misused field fails at load; `evaluating` declares the variables as plain maps, because the typed
 * environment also checks every value at run time (≈ 3× the evaluation cost) for what the checker has
 * already proven. Both register the same functions.
 */
export interface PolicyEnvironment {
  readonly checking: Environment;
  readonly evaluating: Environment;
}

function baseEnvironment(): Environment {
  return new Environment({
    // A rule may write ["a", 1]: JSON bodies are heterogeneous, rules about them are too.
    homogeneousAggregateLiterals: false,
    enableOptionalTypes: true,
    // Rules are written by operators, but bound them anyway so a typo cannot make a pathological AST.
    limits: { maxAstNodes: 10_000, maxDepth: 100, maxListElements: 1000, maxMapEntries: 1000, maxCallArguments: 32 },
  });
}

/** Builds the environments once per compile run; creating them is the expensive part. */
export function createPolicyEnvironment(): PolicyEnvironment {
  const matches = linearMatches();
  const checking = baseEnvironment()
    .registerVariable('identity', { schema: POLICY_SCHEMAS.identity })
    .registerVariable('connection', { schema: POLICY_SCHEMAS.connection })
    .registerVariable('request', { schema: POLICY_SCHEMAS.request })
    .registerVariable('session', { schema: POLICY_SCHEMAS.session })
    .registerVariable('usage', { schema: POLICY_SCHEMAS.usage })
    .registerVariable('now', 'google.protobuf.Timestamp')
    .registerFunction(LINEAR_MATCHES_SIGNATURE, matches);
  const evaluating = baseEnvironment()
    .registerVariable('identity', 'map')
    .registerVariable('connection', 'map')
    .registerVariable('request', 'map')
    .registerVariable('session', 'map')
    .registerVariable('usage', 'map')
    .registerVariable('now', 'google.protobuf.Timestamp')
    .registerFunction(LINEAR_MATCHES_SIGNATURE, matches);
  return { checking, evaluating };
}

/**
 * The fields of each variable and their CEL types, so the type checker refuses at load what can only fail
 * per request: `request.jsn.model` (no such field), `request.size > "1000"`. `dyn` where a value may be
 * null or is the caller's JSON; its fields are checked against sample requests by `sluice serve --check`.
 */
export const POLICY_SCHEMAS = {
  identity: { sub: 'string', email: 'dyn', name: 'dyn', groups: 'list<string>', roles: 'list<string>', client_id: 'dyn', issuer: 'string' },
  connection: { name: 'string', type: 'string', labels: 'map<string, string>' },
  // `grpc` is null but for gRPC calls: { service, method, metadata }. `json` is the body as it will leave
  // (masked by the connection's request profiles); `raw_json` the body as sent, for rules that must see it.
  request: { method: 'string', path: 'string', query: 'map<string, string>', headers: 'map<string, string>', grpc: 'dyn', json: 'dyn', raw_json: 'dyn', size: 'int' },
  session: { id: 'string', reason: 'dyn' },
  // Named after the quota limits whose windows they count (UTC minute, day, calendar month).
  usage: { requests_per_minute: 'int', tokens_today: 'int', tokens_this_month: 'int', input_tokens_today: 'int', output_tokens_today: 'int' },
} as const;

/** 1-based line and column of a character offset. */
function positionOf(source: string, offset: number): { line: number; column: number } {
  const before = source.slice(0, Math.max(0, offset));
  const lines = before.split('\n');
  return { line: lines.length, column: (lines.at(-1)?.length ?? 0) + 1 };
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

/**
 * Parses and type-checks `source` as a boolean CEL expression. Returns the predicate, or the problem with
 * its position (the config loader reports it as `policies[2].when: … at line 1, column 31`).
 */
export function compileCel(env: PolicyEnvironment, source: string): CelPredicate | CelCompileProblem {
  let parsed: ReturnType<Environment['parse']>;
  try {
    parsed = env.checking.parse(source);
  } catch (err) {
    return problemOf(source, err);
  }
  // `matches()` runs on RE2 (linear time); a literal pattern RE2 cannot run is refused here.
  const regexProblem = useLinearMatches(parsed);
  if (regexProblem !== null) return { message: regexProblem.message, ...positionOf(source, regexProblem.offset) };
  const checked = parsed.check();
  if (!checked.valid) return problemOf(source, checked.error);
  // `dyn` is allowed: `request.json.stream` is a bool at run time; its type is only known then.
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    return { message: `must be a boolean expression, but it is of type ${checked.type}`, line: 1, column: 1 };
  }
  // Proven by the typed check above; evaluated without the per-value type checks of the typed environment.
  const run = env.evaluating.parse(source);
  useLinearMatches(run);
  const runChecked = run.check();
  if (!runChecked.valid) return problemOf(source, runChecked.error);
  return { source, evaluate: (activation) => run(activation as unknown as Record<string, unknown>) };
}

const HEAD_FIELD = /^\s*\.\s*\??\s*(method|path|query|headers|grpc)\b/;

/**
 * Whether an expression may look at the request body (`request.json`, `request.size`, or `request` as a
 * whole). Conservative: any use of `request` other than its head fields counts, so a body is read ahead
 * for policy only when some rule needs it and streams untouched otherwise.
 */
export function readsRequestBody(source: string): boolean {
  for (const m of source.matchAll(/\brequest\b/g)) {
    if (!HEAD_FIELD.test(source.slice(m.index + m[0].length))) return true;
  }
  return false;
}

/**
 * Whether an expression may look at the caller's usage. Conservative (any `usage` token, a string's
 * included): a rule that names it costs a store read per request, and only such a rule.
 */
export function readsUsage(source: string): boolean {
  return /\busage\b/.test(source);
}

function problemOf(source: string, err: unknown): CelCompileProblem {
  const e = err as { message?: string; summary?: string; range?: { start: number } } | undefined;
  const message = e?.summary ?? firstLine(e?.message ?? String(err));
  const { line, column } = positionOf(source, e?.range?.start ?? 0);
  return { message, line, column };
}

/** Whether `compileCel` failed. */
export function isCompileProblem(result: CelPredicate | CelCompileProblem): result is CelCompileProblem {
  return (result as CelCompileProblem).message !== undefined && (result as CelPredicate).evaluate === undefined;
}

/** `Unexpected token: EOF at line 1, column 31`: one line for the config loader. */
export function describeCompileProblem(problem: CelCompileProblem): string {
  return `${problem.message} at line ${problem.line}, column ${problem.column}`;
}

/** Where and why an evaluation failed, in one line. */
export function describeEvaluationError(source: string, err: unknown): string {
  if (err instanceof EvaluationError || err instanceof ParseError) {
    const e = err as { summary?: string; range?: { start: number } };
    const { line, column } = positionOf(source, e.range?.start ?? 0);
    return `${e.summary ?? firstLine(err.message)} at line ${line}, column ${column}`;
  }
  return err instanceof Error ? err.message : String(err);
}
