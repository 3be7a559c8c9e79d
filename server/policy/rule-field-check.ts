import type { ASTNode } from '@marcbachmann/cel-js';
import { createPolicyEnvironment } from './cel-expression.js';
import type { PolicyRule } from './policy-config.js';
import type { SampleRequest } from './sample-requests.js';

/**
 * Which `request.json` fields the rules read that no sample request has. The type checker cannot see
 * these (the body is `dyn`), yet a deny or review rule reading a field the requests do not have fails on
 * each of them, and is refused: a warning at `--check` time saves the surprise.
 */

/** A list element, whatever its index (`request.json.messages[0]`). */
const ELEMENT = Symbol('element');
type Segment = string | typeof ELEMENT;

/** A rule that reads a field no sample has. */
export interface FieldWarning {
  /** 0-based position of the rule in `policies`. */
  readonly index: number;
  readonly rule: string;
  /** The field as written in CEL, up to its first segment no sample has: `request.json.max_token`. */
  readonly field: string;
  /** The closest field the samples do have at that place, when one is close: `request.json.max_tokens`. */
  readonly suggestion?: string;
  /** `policies[0] "cap": request.json.max_token is in no sample request (did you mean request.json.max_tokens?)`. */
  readonly message: string;
}

const ACCESS = new Set(['.', '.?', '[]', '[?]']);

/** The path below `request.json` an access node reads, cut at the first index that is not a literal; undefined for anything else. */
function jsonPathOf(node: ASTNode): Segment[] | undefined {
  const segments: Segment[] = [];
  let current: ASTNode = node;
  while (ACCESS.has(current.op)) {
    const [target, key] = current.args as [ASTNode, string | ASTNode];
    if (typeof key === 'string') segments.unshift(key);
    else if (key.op === 'value' && typeof key.args === 'string') segments.unshift(key.args);
    else if (key.op === 'value' && (typeof key.args === 'bigint' || typeof key.args === 'number')) segments.unshift(ELEMENT);
    // A computed key (`request.json[k]`): nothing below it can be named, so only what comes before counts.
    else segments.splice(0);
    current = target;
  }
  if (current.op !== 'id' || current.args !== 'request' || segments[0] !== 'json') return undefined;
  return segments.slice(1);
}

function children(node: ASTNode): ASTNode[] {
  const out: ASTNode[] = [];
  const collect = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(collect);
    else if (typeof value === 'object' && value !== null && typeof (value as { op?: unknown }).op === 'string') out.push(value as ASTNode);
  };
  collect(node.args);
  return out;
}

/** Every `request.json` path the expression reads (prefixes included, since a longer path reads them too). */
function jsonPathsRead(ast: ASTNode): Segment[][] {
  const paths: Segment[][] = [];
  const visit = (node: ASTNode): void => {
    if (ACCESS.has(node.op)) {
      const path = jsonPathOf(node);
      if (path !== undefined && path.length > 0) paths.push(path);
    }
    children(node).forEach(visit);
  };
  visit(ast);
  return paths;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The values the samples hold at `path`; a free-form map (an empty object) holds anything below it. */
function valuesAt(samples: readonly unknown[], path: readonly Segment[]): { values: unknown[]; open: boolean } {
  let values = [...samples];
  for (const segment of path) {
    if (values.some((v) => isMap(v) && Object.keys(v).length === 0)) return { values: [], open: true };
    const next: unknown[] = [];
    for (const v of values) {
      if (segment === ELEMENT && Array.isArray(v)) next.push(...(v as unknown[]));
      else if (typeof segment === 'string' && isMap(v) && Object.hasOwn(v, segment)) next.push(v[segment]);
    }
    values = next;
  }
  return { values, open: false };
}

/** Edit distance (insertions, deletions, substitutions, adjacent swaps) between two short names. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const c of candidates) {
    const d = distance(name.toLowerCase(), c.toLowerCase());
    if (d <= Math.max(1, Math.floor(name.length / 4)) && (best === undefined || d < best.d)) best = { name: c, d };
  }
  return best?.name;
}

function render(path: readonly Segment[]): string {
  return `request.json${path.map((s) => (s === ELEMENT ? '[i]' : /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`)).join('')}`;
}

/**
 * Warns about each rule that reads a `request.json` field none of `samples` has, naming the rule, the
 * field, and the closest field the samples have there ("did you mean max_tokens?"). Rules that do not
 * parse are the config loader's to report and are skipped here.
 */
export function unknownJsonFields(policies: readonly PolicyRule[], samples: readonly SampleRequest[]): FieldWarning[] {
  const env = createPolicyEnvironment();
  const bodies = samples.map((s) => s.body);
  const warnings: FieldWarning[] = [];
  policies.forEach((rule, index) => {
    let ast: ASTNode;
    try {
      ast = env.checking.parse(rule.when).ast;
    } catch {
      return;
    }
    const reported = new Set<string>();
    for (const path of jsonPathsRead(ast)) {
      // The shortest prefix no sample has is the field to name: `max_token`, not `max_token.x`.
      const missingAt = path.findIndex((_, i) => {
        const { values, open } = valuesAt(bodies, path.slice(0, i + 1));
        return !open && values.length === 0;
      });
      if (missingAt === -1) continue;
      const prefix = path.slice(0, missingAt + 1);
      const field = render(prefix);
      if (reported.has(field)) continue;
      reported.add(field);
      const last = prefix[missingAt]!;
      const siblings = new Set<string>();
      for (const v of valuesAt(bodies, prefix.slice(0, -1)).values) if (isMap(v)) Object.keys(v).forEach((k) => siblings.add(k));
      const near = typeof last === 'string' ? closest(last, siblings) : undefined;
      const suggestion = near === undefined ? undefined : render([...prefix.slice(0, -1), near]);
      warnings.push({
        index,
        rule: rule.name,
        field,
        ...(suggestion === undefined ? {} : { suggestion }),
        message: `policies[${index}] "${rule.name}": ${field} is in no sample request${suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`}`,
      });
    }
  });
  return warnings;
}
