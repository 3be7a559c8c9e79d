import { JSONPath } from 'jsonpath-plus';
import type { CompiledProfile } from './compiled-profile.js';
import { labelOf } from './compiled-profile.js';
import type { MaskingCounter } from './masking-summary.js';
import { replacementFor } from './replacement.js';

/** What masking one parsed JSON document did. */
export interface JsonMaskResult {
  readonly value: unknown;
  /** False when nothing was replaced: the caller can then send the original bytes. */
  readonly changed: boolean;
}

/** Strings at most this long are remembered as clean. */
const CLEAN_MAX_LENGTH = 256;
/** At most this many clean strings are remembered. */
const CLEAN_MAX_ENTRIES = 1024;

/** Options of `maskJson`. */
export interface MaskJsonOptions {
  /**
   * Strings the text rules are known to leave alone, filled as they are found: a stream repeats its ids,
   * model and object names in every event. Ignored when the profile has selectors (they see the path).
   */
  readonly clean?: Set<string>;
}

/**
 * Masks a parsed JSON document in place: `json_paths` matches, then `json_keys` values (any type), then
 * every other string through the selectors and the text rules.
 */
export function maskJson(root: unknown, profile: CompiledProfile, counter: MaskingCounter, options: MaskJsonOptions = {}): JsonMaskResult {
  const pathHits = profile.jsonPaths.length === 0 ? null : jsonPathHits(root, profile);
  // Pointers serve json_paths and paths serve selectors: neither is built when nothing reads it.
  const wantPointer = pathHits !== null;
  const wantPath = profile.selectors.length > 0;
  const clean = wantPath ? undefined : options.clean;
  let changed = false;

  const visit = (value: unknown, pointer: string, path: string, key: string | undefined): unknown => {
    const byPath = pathHits?.get(pointer);
    if (byPath !== undefined) {
      changed = true;
      counter.add('json_path', `json_path:${byPath.name}`);
      return replacementFor(asText(value), 'JSON_PATH', byPath.replacement);
    }
    const byKey = key === undefined || profile.jsonKeys.size === 0 ? undefined : profile.jsonKeys.get(key.toLowerCase());
    if (byKey !== undefined) {
      changed = true;
      counter.add(byKey.name, `json_key:${byKey.name}`);
      return replacementFor(asText(value), labelOf(byKey.name), byKey.replacement);
    }
    if (typeof value === 'string') {
      if (clean?.has(value)) return value;
      const masked = maskString(value, path, profile, counter);
      if (masked !== value) changed = true;
      else if (clean !== undefined && value.length <= CLEAN_MAX_LENGTH && clean.size < CLEAN_MAX_ENTRIES) clean.add(value);
      return masked;
    }
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        value[i] = visit(value[i], wantPointer ? `${pointer}/${i}` : '', wantPath ? `${path}[${i}]` : '', undefined);
      }
      return value;
    }
    if (value !== null && typeof value === 'object') {
      const obj = value as Record<string, unknown>;
      for (const k of Object.keys(obj)) {
        obj[k] = visit(obj[k], wantPointer ? `${pointer}/${escapePointer(k)}` : '', wantPath ? `${path}${pathSegment(k)}` : '', k);
      }
      return obj;
    }
    return value;
  };

  const value = visit(root, '', '$', undefined);
  return { value, changed };
}

/** A JSON string value through the selectors (first answer wins), else the text rules. */
export function maskString(value: string, path: string, profile: CompiledProfile, counter: MaskingCounter): string {
  for (const s of profile.selectors) {
    const replaced = s.select(value, path);
    if (typeof replaced === 'string') {
      if (replaced !== value) counter.add('selector', `selector:${s.module}`);
      return replaced;
    }
  }
  return profile.text.empty ? value : profile.text.mask(value, counter);
}

/** JSON pointers of every `json_paths` match, with the first path that matched. */
function jsonPathHits(root: unknown, profile: CompiledProfile): Map<string, CompiledProfile['jsonPaths'][number]> {
  const hits = new Map<string, CompiledProfile['jsonPaths'][number]>();
  if (root === null || typeof root !== 'object') return hits;
  for (const entry of profile.jsonPaths) {
    // Script filters are refused at config load; eval off keeps it that way whatever the library's default.
    const pointers = JSONPath({ path: entry.name, json: root as object, resultType: 'pointer', eval: false, wrap: true }) as string[];
    for (const p of pointers) if (!hits.has(p)) hits.set(p, entry);
  }
  return hits;
}

function asText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? '';
}

function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function pathSegment(key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}
