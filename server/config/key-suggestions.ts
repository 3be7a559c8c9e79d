import type { z } from 'zod';

/** The part of a zod schema's internals this file reads; zod 4 keeps a schema's definition at `_zod.def`. */
interface SchemaDef {
  type: string;
  innerType?: Schema;
  in?: Schema;
  shape?: Record<string, Schema>;
  element?: Schema;
  valueType?: Schema;
  options?: Schema[];
  getter?: () => Schema;
}
type Schema = { _zod: { def: SchemaDef } };

/** Wrappers that add a default or a check but hold the same keys. */
const WRAPPERS = new Set(['default', 'prefault', 'optional', 'nullable', 'nonoptional', 'readonly', 'catch']);

/** The schemas a value at `path` may be checked by (several below a union), wrappers removed. */
function schemasAt(root: z.ZodType, path: readonly PropertyKey[]): Schema[] {
  let current: Schema[] = [root as unknown as Schema];
  for (const part of path) {
    const next: Schema[] = [];
    for (const schema of current.flatMap(unwrap)) {
      const def = schema._zod.def;
      if (def.type === 'object' && def.shape !== undefined && Object.hasOwn(def.shape, String(part))) next.push(def.shape[String(part)]!);
      else if (def.type === 'array' && typeof part === 'number' && def.element !== undefined) next.push(def.element);
      else if (def.type === 'record' && def.valueType !== undefined) next.push(def.valueType);
    }
    current = next;
  }
  return current.flatMap(unwrap);
}

function unwrap(schema: Schema): Schema[] {
  let s = schema;
  for (let depth = 0; depth < 32; depth += 1) {
    const def = s._zod.def;
    if (WRAPPERS.has(def.type) && def.innerType !== undefined) s = def.innerType;
    else if (def.type === 'pipe' && def.in !== undefined) s = def.in;
    else if (def.type === 'lazy' && def.getter !== undefined) s = def.getter();
    else if (def.type === 'union' && def.options !== undefined) return def.options.flatMap(unwrap);
    else return [s];
  }
  return [s];
}

/** The keys the mapping at `path` accepts (for a union, those of every branch), in schema order. */
export function knownKeys(root: z.ZodType, path: readonly PropertyKey[]): string[] {
  const keys = new Set<string>();
  for (const schema of schemasAt(root, path)) {
    const shape = schema._zod.def.type === 'object' ? schema._zod.def.shape : undefined;
    for (const key of Object.keys(shape ?? {})) keys.add(key);
  }
  return [...keys];
}

/**
 * The known key an unknown one was most likely meant to be: the same letters in another case or with
 * other separators (`allowGroups`), else the nearest by edit distance within a third of its length
 * (`allowed_groups` → `allow_groups`).
 */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const bare = (k: string): string => k.toLowerCase().replace(/[-_\s]/g, '');
  const same = known.find((k) => bare(k) === bare(key));
  if (same !== undefined) return same;
  const limit = Math.max(1, Math.floor(key.length / 3));
  let best: { key: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance <= limit && (best === undefined || distance < best.distance)) best = { key: candidate, distance };
  }
  return best?.key;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j += 1) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}
