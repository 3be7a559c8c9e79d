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
  readonly #before: string;
  readonly #after: string;

  private constructor(slot: DeltaSlot, before: string, after: string) {
    this.slot = slot;
    this.#before = before;
    this.#after = after;
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
    const before = this.#before;
    const after = this.#after;
    const end = data.length - after.length - 1;
    if (end <= before.length) return undefined;
    // Compared as slices: startsWith with a string it cannot see is a string costs several times more.
    if (data.slice(0, before.length) !== before || data.slice(end + 1) !== after) return undefined;
    if (data.charCodeAt(before.length) !== 0x22 || data.charCodeAt(end) !== 0x22) return undefined;
    const inner = data.slice(before.length + 1, end);
    // Without quote, backslash or control character the token is a valid JSON string reading as itself.
    if (!NOT_PLAIN.test(inner)) return inner;
    let value: unknown;
    try {
      value = JSON.parse(data.slice(before.length, end + 1));
    } catch {
      return undefined;
    }
    return typeof value === 'string' ? value : undefined;
  }

  /** The frame around `text`, as JSON.stringify would write the whole event. */
  render(text: string): string {
    return this.#before + JSON.stringify(text) + this.#after;
  }
}
