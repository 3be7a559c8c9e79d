/** Most tokens remembered, and the longest one remembered. */
export const CLEAN_MAX_ENTRIES = 4096;
export const CLEAN_MAX_LENGTH = 64;

/** A control character: JSON allows it in a string only escaped, so a raw one is never spelled by the table. */
export const CONTROL_CHARACTER = /[\x00-\x1f]/;

/** Slots of the table a token is looked for in before the set (a power of two). */
const FRONT_SLOTS = 256;

/**
 * Short tokens (object keys, ids, integers) a profile's text rules left alone, remembered so a token
 * seen before is not masked again: a bounded set. A set hashes each token it is asked about, and the
 * tokens asked about are new strings cut from each body, whose hashes are not known yet: so a token
 * remembered is also kept in a small table by its length and end characters, where the next one alike
 * is found by comparing it, not hashing it. The table only ever holds tokens of the set: it answers as
 * the set does.
 */
export class CleanTokens {
  readonly #set = new Set<string>();
  readonly #front: (string | undefined)[] = new Array<string | undefined>(FRONT_SLOTS).fill(undefined);

  /** Whether `token` (at most CLEAN_MAX_LENGTH long) is remembered as clean. */
  has(token: string): boolean {
    return this.#front[frontSlot(token)] === token || this.#set.has(token);
  }

  /**
   * The remembered token spelled by `text` from `start` to `end`, compared where it stands (no copy of
   * it is made), or undefined. Only the table is looked in, which holds no token with a backslash or a
   * control character: a token found is written in JSON exactly as it reads, and is a string JSON allows.
   */
  spelledAt(text: string, start: number, end: number): string | undefined {
    const n = end - start;
    if (n === 0) return undefined;
    const known = this.#front[slotOf(n, text.charCodeAt(start), text.charCodeAt(end - 1))];
    if (known === undefined || known.length !== n) return undefined;
    for (let i = 0; i < n; i++) if (known.charCodeAt(i) !== text.charCodeAt(start + i)) return undefined;
    return known;
  }

  /** Remembers `token` as clean while there is room. */
  add(token: string): void {
    if (this.#set.size >= CLEAN_MAX_ENTRIES || this.#set.has(token)) return;
    // Kept as a copy: a token cut from a body can be a slice that keeps the whole body alive.
    const copy = JSON.parse(JSON.stringify(token)) as string;
    this.#set.add(copy);
    if (!copy.includes('\\') && !CONTROL_CHARACTER.test(copy)) this.#front[frontSlot(copy)] = copy;
  }
}

function frontSlot(token: string): number {
  const n = token.length;
  return n === 0 ? 0 : slotOf(n, token.charCodeAt(0), token.charCodeAt(n - 1));
}

function slotOf(length: number, first: number, last: number): number {
  return (length * 31 + first * 7 + last) & (FRONT_SLOTS - 1);
}
