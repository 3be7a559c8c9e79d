import { JSONPath } from 'jsonpath-plus';
import type { CompiledProfile } from './compiled-profile.js';
import { labelOf } from './compiled-profile.js';
import type { MaskingCounter } from './masking-summary.js';
import { maskJsonLikeText, maskJsonLikeTextAsync } from './json-token-masker.js';
import { replacementFor } from './replacement.js';
import { MASK_STEP_CHARS, TurnClock } from './text-masker.js';

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

/** What masking one document shares across its values. */
interface JsonMaskContext {
  readonly profile: CompiledProfile;
  readonly counter: MaskingCounter;
  readonly pathHits: Map<string, CompiledProfile['jsonPaths'][number]> | null;
  /** Pointers serve json_paths and paths serve selectors: neither is built when nothing reads it. */
  readonly wantPointer: boolean;
  readonly wantPath: boolean;
  readonly clean: Set<string> | undefined;
  changed: boolean;
}

function jsonMaskContext(root: unknown, profile: CompiledProfile, counter: MaskingCounter, options: MaskJsonOptions): JsonMaskContext {
  const pathHits = profile.jsonPaths.length === 0 ? null : jsonPathHits(root, profile);
  const wantPath = profile.selectors.length > 0;
  return { profile, counter, pathHits, wantPointer: pathHits !== null, wantPath, clean: wantPath ? undefined : options.clean, changed: false };
}

/** The replacement of a value that a `json_paths` match or a `json_keys` key decides whole, or undefined. */
function ruleReplacement(ctx: JsonMaskContext, value: unknown, pointer: string, key: string | undefined): { value: string } | undefined {
  const byPath = ctx.pathHits?.get(pointer);
  if (byPath !== undefined) {
    ctx.changed = true;
    ctx.counter.add('json_path', `json_path:${byPath.name}`);
    return { value: replacementFor(asText(value), 'JSON_PATH', byPath.replacement) };
  }
  const { jsonKeys } = ctx.profile;
  const byKey = key === undefined || jsonKeys.size === 0 ? undefined : jsonKeys.get(key.toLowerCase());
  if (byKey !== undefined) {
    ctx.changed = true;
    ctx.counter.add(byKey.name, `json_key:${byKey.name}`);
    return { value: replacementFor(asText(value), labelOf(byKey.name), byKey.replacement) };
  }
  return undefined;
}

/** Whether a string value is remembered as clean. */
function knownClean(ctx: JsonMaskContext, value: string): boolean {
  return ctx.clean?.has(value) ?? false;
}

/** Notes what masking a string value did: a change, or a clean string worth remembering. */
function settleString(ctx: JsonMaskContext, value: string, masked: string): string {
  if (masked !== value) ctx.changed = true;
  else if (ctx.clean !== undefined && value.length <= CLEAN_MAX_LENGTH && ctx.clean.size < CLEAN_MAX_ENTRIES) ctx.clean.add(value);
  return masked;
}

/**
 * Masks a parsed JSON document in place: `json_paths` matches, then `json_keys` values (any type), then
 * every other string through the selectors and the text rules.
 */
export function maskJson(root: unknown, profile: CompiledProfile, counter: MaskingCounter, options: MaskJsonOptions = {}): JsonMaskResult {
  const ctx = jsonMaskContext(root, profile, counter, options);
  const { wantPointer, wantPath } = ctx;

  const visit = (value: unknown, pointer: string, path: string, key: string | undefined): unknown => {
    const replaced = ruleReplacement(ctx, value, pointer, key);
    if (replaced !== undefined) return replaced.value;
    if (typeof value === 'string') return knownClean(ctx, value) ? value : settleString(ctx, value, maskString(value, path, profile, counter));
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
  return { value, changed: ctx.changed };
}

/** An array or object being visited by `maskJsonAsync`, with the member it is at. */
interface JsonFrame {
  readonly container: unknown[] | Record<string, unknown>;
  /** The object's keys; null for an array. */
  readonly keys: string[] | null;
  index: number;
  readonly pointer: string;
  readonly path: string;
}

/**
 * Masks a parsed JSON document in place exactly as `maskJson` does (same values, same order), giving
 * the event loop a turn whenever `clock` says one is due, between values and inside a long string, so
 * one large document never holds the loop. The walk keeps its own stack of containers.
 */
export async function maskJsonAsync(
  root: unknown,
  profile: CompiledProfile,
  counter: MaskingCounter,
  options: MaskJsonOptions = {},
  clock = new TurnClock(),
): Promise<JsonMaskResult> {
  const ctx = jsonMaskContext(root, profile, counter, options);
  const { wantPointer, wantPath } = ctx;
  const frames: JsonFrame[] = [];

  /**
   * The value a place ends with (a promise only for a string long enough to be masked in slices); an
   * array or object is returned as is, and masked in place later.
   */
  const settle = (value: unknown, pointer: string, path: string, key: string | undefined): unknown => {
    const replaced = ruleReplacement(ctx, value, pointer, key);
    if (replaced !== undefined) return replaced.value;
    if (typeof value === 'string') {
      if (knownClean(ctx, value)) return value;
      if (value.length > MASK_STEP_CHARS) return maskStringAsync(value, path, profile, counter, clock).then((masked) => settleString(ctx, value, masked));
      return settleString(ctx, value, maskString(value, path, profile, counter));
    }
    if (Array.isArray(value)) frames.push({ container: value, keys: null, index: 0, pointer, path });
    else if (value !== null && typeof value === 'object') frames.push({ container: value as Record<string, unknown>, keys: Object.keys(value), index: 0, pointer, path });
    return value;
  };

  const settledRoot = settle(root, '', '$', undefined);
  const value = settledRoot instanceof Promise ? await settledRoot : settledRoot;
  while (frames.length > 0) {
    const frame = frames[frames.length - 1]!;
    const size = frame.keys === null ? (frame.container as unknown[]).length : frame.keys.length;
    if (frame.index >= size) {
      frames.pop();
      continue;
    }
    const i = frame.index++;
    if (frame.keys === null) {
      const array = frame.container as unknown[];
      const settled = settle(array[i], wantPointer ? `${frame.pointer}/${i}` : '', wantPath ? `${frame.path}[${i}]` : '', undefined);
      array[i] = settled instanceof Promise ? await settled : settled;
    } else {
      const k = frame.keys[i]!;
      const obj = frame.container as Record<string, unknown>;
      const settled = settle(obj[k], wantPointer ? `${frame.pointer}/${escapePointer(k)}` : '', wantPath ? `${frame.path}${pathSegment(k)}` : '', k);
      obj[k] = settled instanceof Promise ? await settled : settled;
    }
    if (clock.due) await clock.pause();
  }
  return { value, changed: ctx.changed };
}

/** A JSON string value through the selectors (first answer wins), else the text rules. */
export function maskString(value: string, path: string, profile: CompiledProfile, counter: MaskingCounter): string {
  const selected = selectorAnswer(value, path, profile, counter);
  if (selected !== undefined) return selected;
  if (profile.text.empty) return value;
  // A string holding JSON (tool-call arguments) has escapes of its own that its reader decodes.
  return value.includes('\\u') ? maskJsonLikeText(value, profile, counter) : profile.text.mask(value, counter);
}

/** `maskString` for a long string: the text rules run in slices with turns of the event loop between. */
async function maskStringAsync(value: string, path: string, profile: CompiledProfile, counter: MaskingCounter, clock: TurnClock): Promise<string> {
  const selected = selectorAnswer(value, path, profile, counter);
  if (selected !== undefined) return selected;
  if (profile.text.empty) return value;
  return value.includes('\\u') ? maskJsonLikeTextAsync(value, profile, counter, clock) : profile.text.maskAsync(value, counter, clock);
}

/** The first selector's answer for a string value, or undefined when none answers. */
function selectorAnswer(value: string, path: string, profile: CompiledProfile, counter: MaskingCounter): string | undefined {
  for (const s of profile.selectors) {
    const replaced = s.select(value, path);
    if (typeof replaced === 'string') {
      if (replaced !== value) counter.add('selector', `selector:${s.module}`);
      return replaced;
    }
  }
  return undefined;
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
