import { LOOKAHEAD_SLACK, type TextRule } from './text-rule.js';

/** Rules whose hold-back reads the same characters: one run serves them all, from the widest window. */
interface RunGroup {
  /** 1 for each ASCII code unit a match can contain. */
  readonly chars: Uint8Array;
  /** The class itself, for code units past ASCII. */
  readonly charClass: RegExp;
  /** 1 for each ASCII code unit a match can start with; null: any it can contain. */
  readonly starts: Uint8Array | null;
  readonly startClass: RegExp | null;
  /** How far back from the text's end the window reaches: the longest match of the group's rules and the look-ahead slack. */
  window: number;
}

function asciiTable(cls: RegExp): Uint8Array {
  const table = new Uint8Array(128);
  for (let c = 0; c < 128; c++) table[c] = cls.test(String.fromCharCode(c)) ? 1 : 0;
  return table;
}

/**
 * The hold-back of a profile's rules (the minimum of their `holdFrom`), computed the way each rule
 * defines it but in one backward pass for all the rules that hold back a trailing run of characters:
 * each character is looked up once in a table of the groups it can belong to, where each rule would
 * walk the run again. A stream asks this on every delta, so it is the hot path of a streamed answer.
 * Rules of another kind (a `partial` pattern, a fixed window) are asked one by one.
 */
export class HoldBack {
  readonly #groups: readonly RunGroup[];
  /** Per ASCII code unit, the bit set of groups whose characters include it. */
  readonly #member: Uint32Array;
  readonly #others: readonly TextRule[];
  /** Every group's bit. */
  readonly #all: number;
  /** The smallest window of any group: no floor lies above the text's end less this. */
  readonly #shortestWindow: number;
  /** Scratch space of one call: the groups whose runs ended at each step of the walk, and where. */
  readonly #endMask: Int32Array;
  readonly #endAt: Int32Array;

  constructor(rules: readonly TextRule[]) {
    const groups = new Map<string, RunGroup>();
    const others: TextRule[] = [];
    for (const rule of rules) {
      const shape = rule.holdShape;
      // More groups than bits (never with the built-in detectors): the rest are asked one by one.
      if (shape === undefined || (groups.size >= 32 && !groups.has(groupKey(rule)))) {
        others.push(rule);
        continue;
      }
      const key = groupKey(rule);
      const window = shape.maxLength + LOOKAHEAD_SLACK;
      const known = groups.get(key);
      if (known !== undefined) known.window = Math.max(known.window, window);
      else {
        groups.set(key, {
          chars: asciiTable(shape.chars),
          charClass: shape.chars,
          starts: shape.starts === undefined ? null : asciiTable(shape.starts),
          startClass: shape.starts ?? null,
          window,
        });
      }
    }
    this.#groups = [...groups.values()];
    this.#member = new Uint32Array(128);
    this.#groups.forEach((g, bit) => {
      for (let c = 0; c < 128; c++) if (g.chars[c] === 1) this.#member[c]! |= 1 << bit;
    });
    this.#others = others;
    this.#all = this.#groups.length === 32 ? -1 : (1 << this.#groups.length) - 1;
    this.#shortestWindow = Math.min(...this.#groups.map((g) => g.window));
    this.#endMask = new Int32Array(this.#groups.length);
    this.#endAt = new Int32Array(this.#groups.length);
  }

  /** The earliest index from which more text could still change a match (see TextRule.holdFrom). */
  from(text: string, from: number): number {
    let cut = text.length;
    const others = this.#others;
    for (let r = 0; r < others.length; r++) {
      const h = others[r]!.holdFrom(text, from);
      if (h < cut) cut = h;
    }
    const groups = this.#groups;
    const n = text.length;
    // A group's run is held back from its window's floor at most; below `highestFloor` some group's
    // floor may be reached, above it none is (most deltas end far above every floor).
    const highestFloor = Math.max(from, n - this.#shortestWindow);
    // Walk back while some group's run goes on: a run ends at a character outside its group's class or
    // at its floor. `alive` holds the groups still running; the groups ending at each step are noted.
    const endMask = this.#endMask;
    const endAt = this.#endAt;
    let steps = 0;
    let alive = this.#all;
    for (let i = n; alive !== 0; i--) {
      let ended = 0;
      if (i <= highestFloor) {
        for (let bits = alive; bits !== 0; bits &= bits - 1) {
          const g = lowestBit(bits);
          if (i <= Math.max(from, n - groups[g]!.window)) ended |= 1 << g;
        }
      }
      if (i > from) {
        const c = text.charCodeAt(i - 1);
        ended |= alive & ~(c < 128 ? this.#member[c]! : this.#memberOf(c, alive));
      }
      if (ended !== 0) {
        endMask[steps] = ended;
        endAt[steps++] = i;
        alive &= ~ended;
      }
    }
    // From a group's end, its hold-back starts at the first character that can begin a match, never
    // before the end: the groups that ended earliest in the text come first, and once an end is past
    // the cut found so far, no later one can lower it.
    for (let k = steps - 1; k >= 0 && endAt[k]! < cut; k--) {
      for (let bits = endMask[k]!; bits !== 0; bits &= bits - 1) {
        const h = startFrom(groups[lowestBit(bits)]!, text, endAt[k]!);
        if (h < cut) cut = h;
      }
    }
    return cut;
  }

  /** The groups among `alive` whose class holds a code unit past ASCII. */
  #memberOf(c: number, alive: number): number {
    const char = String.fromCharCode(c);
    let member = 0;
    for (let bits = alive; bits !== 0; bits &= bits - 1) {
      const g = lowestBit(bits);
      if (this.#groups[g]!.charClass.test(char)) member |= 1 << g;
    }
    return member;
  }

}

/** The first index from `at` where a match of the group can start (the text's end when none). */
function startFrom(group: RunGroup, text: string, at: number): number {
  const { starts, startClass } = group;
  if (starts === null) return at;
  let i = at;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c < 128 ? starts[c] === 1 : startClass!.test(String.fromCharCode(c))) break;
    i++;
  }
  return i;
}

/** The index of the lowest bit set in `bits` (not 0). */
function lowestBit(bits: number): number {
  return 31 - Math.clz32(bits & -bits);
}

function groupKey(rule: TextRule): string {
  const shape = rule.holdShape!;
  return `${shape.chars.source}\u0000${shape.starts?.source ?? ''}`;
}

