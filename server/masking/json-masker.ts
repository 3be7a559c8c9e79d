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
  // Only short strings are remembered; hashing a long one to look it up would cost a pass over it.
  return value.length <= CLEAN_MAX_LENGTH && (ctx.clean?.has(value) ?? false);
}

/** Notes what masking a string value did: a change, or a clean string worth remembering. */
function settleString(ctx: JsonMaskContext, value: string, masked: string): string {
  if (masked !== value) ctx.changed = true;
  else if (ctx.clean !== undefined && value.length <= CLEAN_MAX_LENGTH && ctx.clean.size < CLEAN_MAX_ENTRIES) ctx.clean.add(value);
  return masked;
}

/** A string value too long to mask in one step: the walk's driver masks it (in slices, when asynchronous). */
interface LongString {
  readonly value: string;
  readonly path: string;
}

/**
 * The walk over one document: it yields each long string (and is sent back its masked text), and null
 * every WALK_TURN_VALUES values or MASK_STEP_CHARS characters of strings masked, where an asynchronous
 * driver may give the event loop a turn. One walk serves both forms, so the asynchronous output is the
 * synchronous output.
 */
type JsonWalk = Generator<LongString | null, unknown, string | undefined>;

/** Values settled between two points where an asynchronous driver looks at its clock. */
const WALK_TURN_VALUES = 64;

/** An array or object being visited, with the member it is at. */
interface JsonFrame {
  readonly container: unknown[] | Record<string, unknown>;
  /** The object's keys; null for an array. */
  readonly keys: string[] | null;
  index: number;
  readonly pointer: string;
  readonly path: string;
}

/** Marks a place whose string the driver must mask (see `settle`). */
const LONG = Symbol('long string');

/**
 * The value a place ends with, or LONG for a string long enough to be masked in slices; an array or
 * object is returned as it is, pushed on `frames`, and masked in place later.
 */
function settle(ctx: JsonMaskContext, frames: JsonFrame[], value: unknown, pointer: string, path: string, key: string | undefined): unknown {
  const replaced = ruleReplacement(ctx, value, pointer, key);
  if (replaced !== undefined) return replaced.value;
  if (typeof value === 'string') {
    if (knownClean(ctx, value)) return value;
    if (value.length > MASK_STEP_CHARS) return LONG;
    return settleString(ctx, value, maskString(value, path, ctx.profile, ctx.counter));
  }
  if (Array.isArray(value)) frames.push({ container: value, keys: null, index: 0, pointer, path });
  else if (value !== null && typeof value === 'object') frames.push({ container: value as Record<string, unknown>, keys: Object.keys(value), index: 0, pointer, path });
  return value;
}

/**
 * Masks a parsed document in place, depth first in document order: `json_paths` matches, then
 * `json_keys` values (any type), then every other string through the selectors and the text rules.
 * The walk keeps its own stack of containers, so depth costs no call stack.
 */
function* jsonWalk(ctx: JsonMaskContext, root: unknown): JsonWalk {
  const { wantPointer, wantPath } = ctx;
  const frames: JsonFrame[] = [];
  let value = settle(ctx, frames, root, '', '$', undefined);
  if (value === LONG) value = settleString(ctx, root as string, (yield { value: root as string, path: '$' })!);
  let values = 0;
  let chars = 0;
  while (frames.length > 0) {
    const frame = frames[frames.length - 1]!;
    const size = frame.keys === null ? (frame.container as unknown[]).length : frame.keys.length;
    if (frame.index >= size) {
      frames.pop();
      continue;
    }
    const i = frame.index++;
    const k = frame.keys === null ? undefined : frame.keys[i]!;
    const container = frame.container as Record<string | number, unknown>;
    const slot = k ?? i;
    const pointer = wantPointer ? `${frame.pointer}/${k === undefined ? i : escapePointer(k)}` : '';
    const path = wantPath ? `${frame.path}${k === undefined ? `[${i}]` : pathSegment(k)}` : '';
    const original = container[slot];
    let settled = settle(ctx, frames, original, pointer, path, k);
    if (settled === LONG) settled = settleString(ctx, original as string, (yield { value: original as string, path })!);
    container[slot] = settled;
    if (typeof original === 'string') chars += original.length;
    if (++values >= WALK_TURN_VALUES || chars >= MASK_STEP_CHARS) {
      values = 0;
      chars = 0;
      yield null;
    }
  }
  return value;
}

/**
 * Masks a parsed JSON document in place: `json_paths` matches, then `json_keys` values (any type), then
 * every other string through the selectors and the text rules.
 */
export function maskJson(root: unknown, profile: CompiledProfile, counter: MaskingCounter, options: MaskJsonOptions = {}): JsonMaskResult {
  const ctx = jsonMaskContext(root, profile, counter, options);
  const walk = jsonWalk(ctx, root);
  let step = walk.next();
  while (!step.done) step = walk.next(step.value === null ? undefined : maskString(step.value.value, step.value.path, profile, counter));
  return { value: step.value, changed: ctx.changed };
}

/**
 * Masks a parsed JSON document in place exactly as `maskJson` does (same values, same order), giving
 * the event loop a turn whenever `clock` says one is due, between values and inside a long string, so
 * one large document never holds the loop.
 */
export async function maskJsonAsync(
  root: unknown,
  profile: CompiledProfile,
  counter: MaskingCounter,
  options: MaskJsonOptions = {},
  clock = new TurnClock(),
): Promise<JsonMaskResult> {
  const ctx = jsonMaskContext(root, profile, counter, options);
  const walk = jsonWalk(ctx, root);
  let step = walk.next();
  while (!step.done) {
    if (step.value === null) {
      await clock.pause();
      step = walk.next();
    } else {
      step = walk.next(await maskStringAsync(step.value.value, step.value.path, profile, counter, clock));
    }
  }
  return { value: step.value, changed: ctx.changed };
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
