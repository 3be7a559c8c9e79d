import type { DeltaSlot } from './stream-shapes.js';

/** Stands in for the delta while the template is cut; stringified it is `"\u0000sluice-delta\u0000"`. */
const MARKER = '\u0000sluice-delta\u0000';
const MARKER_JSON = JSON.stringify(MARKER);

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
    if (data.length < this.#before.length + 2 + this.#after.length) return undefined;
    if (!data.startsWith(this.#before) || !data.endsWith(this.#after)) return undefined;
    const token = data.slice(this.#before.length, data.length - this.#after.length);
    if (token.charCodeAt(0) !== 0x22 || token.charCodeAt(token.length - 1) !== 0x22) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(token);
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
