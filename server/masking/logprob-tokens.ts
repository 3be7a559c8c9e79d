import { FragmentChannel } from './fragment-channel.js';
import { MaskingCounter } from './masking-summary.js';
import type { TextMasker } from './text-masker.js';
import { literalFinder } from './text-scan.js';

type Json = Record<string, unknown>;

/**
 * Characters of the chosen tokens before an alternative (`top_logprobs`) that the alternative is
 * checked with: an alternative can complete a value the chosen tokens began.
 */
const ALTERNATIVE_CONTEXT = 256;

/** Keys that hold token log-probabilities in the answers of OpenAI-compatible servers, vLLM, TGI and Ollama. */
const LOGPROB_KEYS = new Set(['logprobs', 'top_logprobs', 'prompt_logprobs', 'top_tokens']);

/**
 * The field naming a token's text in a list of token objects: `token` (OpenAI chat and Responses,
 * vLLM, Ollama) or `text` beside a `logprob` (TGI's `details.tokens`); undefined when `value` is not such
 * a list.
 */
export function tokenField(value: unknown): 'token' | 'text' | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const first = value[0] as Json | null;
  if (first === null || typeof first !== 'object') return undefined;
  const field = typeof first.token === 'string' ? 'token' : typeof first.text === 'string' && 'logprob' in first ? 'text' : undefined;
  if (field === undefined) return undefined;
  for (const e of value) if (e === null || typeof e !== 'object' || typeof (e as Json)[field] !== 'string') return undefined;
  return field;
}

/** A legacy completions `logprobs` object: `tokens`, `token_logprobs`, `top_logprobs` (token → logprob), `text_offset`. */
export function isLegacyLogprobs(value: unknown): value is Json & { tokens: string[] } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const tokens = (value as Json).tokens;
  return Array.isArray(tokens) && tokens.every((t) => typeof t === 'string');
}

/** A legacy object's tokens as token objects (alternatives as a list), so one channel serves both shapes. */
export function legacyEntries(legacy: Json & { tokens: string[] }): Json[] {
  const logprobs = Array.isArray(legacy.token_logprobs) ? legacy.token_logprobs : [];
  const tops = Array.isArray(legacy.top_logprobs) ? legacy.top_logprobs : [];
  const offsets = Array.isArray(legacy.text_offset) ? legacy.text_offset : [];
  return legacy.tokens.map((token, i) => {
    const top = tops[i];
    return {
      token,
      logprob: logprobs[i] ?? null,
      top_logprobs:
        top !== null && typeof top === 'object' && !Array.isArray(top)
          ? Object.entries(top as Record<string, unknown>).map(([t, lp]) => ({ token: t, logprob: lp }))
          : (top ?? null),
      offset: offsets[i],
    };
  });
}

/** Writes token objects back into a legacy object; offsets run on from the first one's, over the masked tokens. */
export function setLegacyEntries(legacy: Json, entries: readonly Json[], firstOffset: number | undefined): void {
  legacy.tokens = entries.map((e) => e.token);
  if ('token_logprobs' in legacy) legacy.token_logprobs = entries.map((e) => e.logprob);
  if ('top_logprobs' in legacy) {
    legacy.top_logprobs = entries.map((e) => {
      if (!Array.isArray(e.top_logprobs)) return e.top_logprobs ?? null;
      const dict: Record<string, unknown> = {};
      for (const alt of e.top_logprobs as Json[]) dict[alt.token as string] = alt.logprob;
      return dict;
    });
  }
  if ('text_offset' in legacy) {
    let at = firstOffset ?? (typeof entries[0]?.offset === 'number' ? entries[0].offset : 0);
    legacy.text_offset = entries.map((e) => {
      const here = at;
      at += (e.token as string).length;
      return here;
    });
  }
}

interface TokenRef {
  readonly entry: Json;
  /** The chosen tokens' text before this one (as received): what its alternatives are checked with. */
  readonly context: string;
}

/**
 * The tokens of one logprobs list as one channel: the text they spell is masked like any streamed text,
 * each token becomes its share of the masked text, and its alternatives are kept only where they carry
 * no part of a value. Streamed, undecided tokens wait (they leave with a later event); whole, `end()` at once.
 */
export class TokenChannel {
  readonly #masker: TextMasker;
  readonly #field: 'token' | 'text';
  readonly #channel: FragmentChannel<TokenRef>;
  #context = '';

  constructor(masker: TextMasker, counter: MaskingCounter, field: 'token' | 'text' = 'token') {
    this.#masker = masker;
    this.#field = field;
    this.#channel = new FragmentChannel(masker, counter);
  }

  /** Adds token objects; returns those decided now, rewritten, in order. */
  push(entries: readonly Json[]): Json[] {
    const fragments = entries.map((entry) => {
      const text = entry[this.#field] as string;
      const ref = { entry, context: this.#context };
      this.#context = nextContext(this.#context, text);
      return { text, ref };
    });
    return this.#channel.push(fragments).map((d) => this.#rewrite(d.ref, d.out));
  }

  end(): Json[] {
    return this.#channel.end().map((d) => this.#rewrite(d.ref, d.out));
  }

  #rewrite({ entry, context }: TokenRef, out: string): Json {
    return rewriteToken(entry, this.#field, out, context, this.#masker);
  }
}

/**
 * Makes a token object carry `out` (its share of the masked text): `bytes` follow the token, and its
 * alternatives are kept only where they carry no part of a value (checked after `context`, the chosen
 * tokens' text before it). Returns the same object.
 */
export function rewriteToken(entry: Json, field: 'token' | 'text', out: string, context: string, masker: TextMasker): Json {
  const changed = out !== entry[field];
  entry[field] = out;
  if ('bytes' in entry) entry.bytes = safeBytes(entry.bytes, out, changed);
  if (Array.isArray(entry.top_logprobs)) {
    if (!changed) entry.top_logprobs = alternatives(entry.top_logprobs, context, masker);
    // The alternatives of a token inside a masked value are guesses at the value itself.
    else entry.top_logprobs = entry.top_logprobs.length === 0 ? [] : [{ token: out, logprob: entry.logprob ?? null, bytes: utf8(out) }];
  }
  return entry;
}

/** The alternatives that neither hold a value nor complete one the chosen tokens began. */
function alternatives(list: unknown[], context: string, masker: TextMasker): unknown[] {
  if (masker.empty) return list;
  // Counted nowhere: alternatives dropped are not replacements the caller reads.
  const scratch = new MaskingCounter();
  const maskedContext = masker.mask(context, scratch);
  const kept: unknown[] = [];
  for (const alt of list) {
    if (alt === null || typeof alt !== 'object') continue;
    const a = alt as Json;
    const token = a.token ?? a.text;
    if (typeof token !== 'string') continue;
    if (masker.mask(context + token, scratch) !== maskedContext + token) continue;
    if ('bytes' in a) a.bytes = safeBytes(a.bytes, token, false);
    kept.push(a);
  }
  return kept;
}

/** The last characters of `context + text`: the context of the token after `text`. */
export function nextContext(context: string, text: string): string {
  return (context + text).slice(-ALTERNATIVE_CONTEXT);
}

/**
 * A token's `bytes` after masking: those of the masked token when it changed; otherwise kept when they
 * are the token's own UTF-8 or at most one character's worth (a multi-byte character split between
 * tokens), and replaced by the token's UTF-8 when they carry anything else.
 */
function safeBytes(bytes: unknown, token: string, changed: boolean): unknown {
  if (!Array.isArray(bytes)) return bytes;
  const own = utf8(token);
  if (changed) return own;
  if (bytes.length === own.length && bytes.every((b, i) => b === own[i])) return bytes;
  if (bytes.length <= 4 && bytes.every((b) => Number.isInteger(b) && (b as number) >= 0 && (b as number) <= 255)) return bytes;
  return own;
}

function utf8(text: string): number[] {
  return [...Buffer.from(text, 'utf8')];
}

/** Masks a whole logprobs list in place, as one channel. */
export function maskTokenList(list: Json[], field: 'token' | 'text', masker: TextMasker, counter: MaskingCounter): void {
  const channel = new TokenChannel(masker, counter, field);
  const out = [...channel.push(list), ...channel.end()];
  list.splice(0, list.length, ...out);
}

/** Masks a whole legacy completions logprobs object in place. */
export function maskLegacyLogprobs(legacy: Json & { tokens: string[] }, masker: TextMasker, counter: MaskingCounter): void {
  const channel = new TokenChannel(masker, counter);
  const entries = legacyEntries(legacy);
  const firstOffset = typeof entries[0]?.offset === 'number' ? entries[0].offset : undefined;
  setLegacyEntries(legacy, [...channel.push(entries), ...channel.end()], firstOffset);
}

/**
 * Masks every logprobs list of a parsed document in place, each as one channel (`skip`: lists a stream
 * masks itself). `prompt_logprobs` (vLLM) is removed: its candidates per prompt position are not a
 * sequence a channel can follow. Returns whether anything changed.
 */
export function maskLogprobLists(root: unknown, masker: TextMasker, counter: MaskingCounter, skip?: ReadonlySet<unknown>): boolean {
  let changed = false;
  const visit = (value: unknown, depth: number): void => {
    if (value === null || typeof value !== 'object' || depth > 64 || skip?.has(value)) return;
    if (Array.isArray(value)) {
      const field = tokenField(value);
      if (field !== undefined) {
        const before = JSON.stringify(value);
        maskTokenList(value as Json[], field, masker, counter);
        if (JSON.stringify(value) !== before) changed = true;
        return;
      }
      for (const v of value) visit(v, depth + 1);
      return;
    }
    const obj = value as Json;
    for (const key of Object.keys(obj)) {
      const v = obj[key];
      if (key === 'prompt_logprobs' && v !== null && v !== undefined) {
        obj[key] = null;
        changed = true;
      } else if (key === 'logprobs' && isLegacyLogprobs(v)) {
        if (skip?.has(v)) continue;
        const before = JSON.stringify(v);
        maskLegacyLogprobs(v, masker, counter);
        if (JSON.stringify(v) !== before) changed = true;
      } else {
        visit(v, depth + 1);
      }
    }
  };
  visit(root, 0);
  return changed;
}

/** Removes token log-probabilities from a parsed document in place (lists become empty, objects null). */
export function stripLogprobs(root: unknown): boolean {
  let changed = false;
  const visit = (value: unknown, depth: number): void => {
    if (value === null || typeof value !== 'object' || depth > 64) return;
    if (Array.isArray(value)) {
      for (const v of value) visit(v, depth + 1);
      return;
    }
    const obj = value as Json;
    for (const key of Object.keys(obj)) {
      const v = obj[key];
      if (LOGPROB_KEYS.has(key) && v !== null && typeof v === 'object') {
        const empty = Array.isArray(v) ? [] : null;
        if (!(Array.isArray(v) && v.length === 0)) {
          obj[key] = empty;
          changed = true;
        }
      } else {
        visit(v, depth + 1);
      }
    }
  };
  visit(root, 0);
  return changed;
}

/**
 * Whether a JSON text may hold token log-probabilities (a cheap test before a walk): a logprobs list or
 * object, or a token's own `"logprob": <number>` (TGI's `details.tokens`).
 */
export function mayHoldLogprobs(text: string): boolean {
  // Every form names "logprob" or "top_tokens": found by a rare character of each, far faster than the
  // pattern steps through the text.
  const logprob = LOGPROB.find(text, 0);
  const topTokens = TOP_TOKENS.find(text, 0);
  if (logprob === -1 && topTokens === -1) return false;
  // The pattern begins at most a quote and "prompt_" before either name.
  LOGPROBS.lastIndex = Math.max(0, Math.min(logprob === -1 ? Infinity : logprob - 8, topTokens === -1 ? Infinity : topTokens - 1));
  return LOGPROBS.test(text);
}

const LOGPROB = literalFinder('logprob');
const TOP_TOKENS = literalFinder('top_tokens');
const LOGPROBS = /"(?:top_|prompt_)?logprobs"\s*:\s*[[{]|"top_tokens"\s*:\s*\[|"logprob"\s*:\s*-?\d/g;
