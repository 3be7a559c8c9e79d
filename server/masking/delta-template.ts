import type { DeltaSlot } from './stream-shapes.js';

/** Stands in for the delta while the template is cut; stringified it is `"\u0000sluice-delta\u0000"`. */
const MARKER = '\u0000sluice-delta\u0000';
const MARKER_JSON = JSON.stringify(MARKER);
/** What a JSON string token must be parsed for: a quote (maybe ending it early), an escape, a control character. */
const NOT_PLAIN = /["\\\x00-\x1f]/;

/**
 * An event's data as the raw text around its one delta string: `{"id":"…","choices":[{"delta":{"content":`
 * and `},"finish_reason":null}]}`. A streaming model repeats that frame in every event, so an event whose
 * data is exactly the frame around another JSON string is the same event with another delta: its other
 * strings were already found clean, and it needs no parse, no generic pass and no re-serialisation.
 */
export class DeltaTemplate {
  readonly slot: DeltaSlot;
  /** The data up to the delta's string token, its opening quote included. */
  readonly before: string;
  /** The data from the delta's closing quote on. */
  readonly after: string;
  /** The same without the quotes, around a token JSON.stringify writes. */
  readonly #bare: { readonly before: string; readonly after: string };
  /** The frame with the last wrapping `matchWrapped` was given (see there). */
  #wrapped: { readonly prefix: string; readonly suffix: string; readonly head: string; readonly tail: string } | null = null;

  private constructor(slot: DeltaSlot, before: string, after: string) {
    this.slot = slot;
    this.before = `${before}"`;
    this.after = `"${after}`;
    this.#bare = { before, after };
  }

  /**
   * The frame of an event with one delta slot whose other strings the masker left alone; null when its
   * data is not what JSON.stringify writes (spaces, escapes), so the frame cannot be cut exactly. `text`
   * is the delta as received. Leaves a marker in the slot: call it once the event has been serialized.
   */
  static learn(data: string, root: unknown, slot: DeltaSlot, text: string): DeltaTemplate | null {
    slot.set(MARKER);
    const framed = JSON.stringify(root);
    const at = framed.indexOf(MARKER_JSON);
    if (at === -1 || framed.indexOf(MARKER_JSON, at + 1) !== -1) return null;
    const before = framed.slice(0, at);
    const after = framed.slice(at + MARKER_JSON.length);
    if (data.length !== before.length + JSON.stringify(text).length + after.length) return null;
    if (!data.startsWith(before) || !data.endsWith(after)) return null;
    return new DeltaTemplate(slot, before, after);
  }

  /**
   * The delta of `data` when it is this frame around one JSON string, else undefined. Any string token
   * can stand in for another without changing the document's structure, so the frame's parse holds.
   */
  match(data: string): string | undefined {
    const before = this.before;
    const after = this.after;
    const end = data.length - after.length;
    if (end < before.length) return undefined;
    // Compared as slices: startsWith with a string it cannot see is a string costs several times more.
    if (data.slice(0, before.length) !== before || data.slice(end) !== after) return undefined;
    const inner = data.slice(before.length, end);
    // Without quote, backslash or control character the token is a valid JSON string reading as itself.
    if (plainToken(inner, false)) return inner;
    let value: unknown;
    try {
      value = JSON.parse(data.slice(before.length - 1, end + 1));
    } catch {
      return undefined;
    }
    return typeof value === 'string' ? value : undefined;
  }

  /**
   * The delta of `text` when it is `prefix`, this frame around a JSON string that reads as it is written
   * (no escape, quote or control character), then `suffix`; else undefined. A stream whose records are
   * wrapped alike (`data: …\n\n`) reads the delta off the record's text, unframed.
   */
  matchWrapped(text: string, prefix: string, suffix: string): string | undefined {
    let wrapped = this.#wrapped;
    if (wrapped === null || wrapped.prefix !== prefix || wrapped.suffix !== suffix) {
      wrapped = this.#wrapped = { prefix, suffix, head: prefix + this.before, tail: this.after + suffix };
    }
    const { head, tail } = wrapped;
    const end = text.length - tail.length;
    if (end < head.length || text.slice(0, head.length) !== head || text.slice(end) !== tail) return undefined;
    const inner = text.slice(head.length, end);
    return plainToken(inner, false) ? inner : undefined;
  }

  /** The frame around `text`, as JSON.stringify would write the whole event. */
  render(text: string): string {
    // Text JSON.stringify writes as it is (most deltas) goes between the quotes at once.
    if (plainToken(text, true)) return this.before + text + this.after;
    return this.#bare.before + JSON.stringify(text) + this.#bare.after;
  }
}

/** Texts up to this long are looked at a code unit at a time; longer ones by a pattern. */
const SHORT_TOKEN = 32;

/**
 * Whether `text` needs nothing escaped between a JSON string's quotes: no quote, backslash or control
 * character, and (`surrogates`: as JSON.stringify writes it, which escapes lone ones) no surrogate.
 */
function plainToken(text: string, surrogates: boolean): boolean {
  if (text.length > SHORT_TOKEN) return !(surrogates ? NOT_WRITTEN_PLAIN : NOT_PLAIN).test(text);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (surrogates && c >= 0xd800 && c <= 0xdfff)) return false;
  }
  return true;
}

/** What JSON.stringify escapes in a string: a quote, a backslash, a control character, a (lone) surrogate. */
const NOT_WRITTEN_PLAIN = /["\\\x00-\x1f\ud800-\udfff]/;
