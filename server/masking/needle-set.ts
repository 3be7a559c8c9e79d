import type { TextRule } from './text-rule.js';
import { occursInAnyCase } from './text-scan.js';

/** One needle string, found through its anchor (its rarest character). */
interface Entry {
  readonly literal: string;
  /** Index in `literal` of the anchor character. */
  readonly anchor: number;
  /** The needle's distance group (see NeedleSet.befores). */
  readonly group: number;
  /** The rule's index in the list the set was made from, and how far before a match its needle may sit. */
  readonly rule: number;
  readonly before: number;
  /** The literal is lower-case ASCII, found in any case (see caselessFinder). */
  readonly caseless: boolean;
}

/**
 * The needles of a profile's rules (see Needle) as one table of their anchor characters, so that a
 * stream looks for every needle in the few characters each delta adds, once, instead of searching its
 * whole held-back text again for each rule on every delta. What it finds is kept per distance group:
 * the last needle of each, which says whether a rule may match from a given index on.
 */
export class NeedleSet {
  /** Per ASCII code unit: 1 + the index in #lists of the needles anchored on it; 0 for none. */
  readonly #table = new Uint8Array(128);
  readonly #lists: Entry[][] = [];
  /** Per group: how far before a match's start its needles may sit. */
  readonly befores: readonly number[];
  /**
   * The most characters any needle has after its anchor: a needle cut by the end of the text was
   * passed over at its anchor, which is looked at again when more text has come.
   */
  readonly #overlap: number;

  /** The farthest any needle sits before its match. */
  readonly #farthest: number;

  private constructor(needles: readonly { literal: string; anchor: number; before: number; rule: number; otherCase?: number }[]) {
    const befores: number[] = [];
    let overlap = 0;
    for (const n of needles) {
      let group = befores.indexOf(n.before);
      if (group === -1) group = befores.push(n.before) - 1;
      const entry = { literal: n.literal, anchor: n.anchor, group, rule: n.rule, before: n.before, caseless: n.otherCase !== undefined };
      for (const code of n.otherCase === undefined ? [n.literal.charCodeAt(n.anchor)] : [n.literal.charCodeAt(n.anchor), n.otherCase]) {
        if (this.#table[code] === 0) this.#table[code] = this.#lists.push([]);
        this.#lists[this.#table[code]! - 1]!.push(entry);
      }
      overlap = Math.max(overlap, n.literal.length - n.anchor - 1);
    }
    this.befores = befores;
    this.#overlap = overlap;
    this.#farthest = Math.max(0, ...befores);
  }

  /**
   * The needle set of `rules`, or null when some rule has none that a table can hold (a rule without a
   * needle, a needle given only as a pattern, an anchor past ASCII): such rules are searched as before.
   */
  static of(rules: readonly TextRule[]): NeedleSet | null {
    const needles: { literal: string; anchor: number; before: number; rule: number; otherCase?: number }[] = [];
    for (let rule = 0; rule < rules.length; rule++) {
      const needle = rules[rule]!.contains;
      if (needle === undefined) return null;
      if (needle.digitRun === true) {
        for (const digit of '0123456789') needles.push({ literal: digit, anchor: 0, before: needle.before, rule });
      } else if (needle.literals !== undefined) {
        for (const l of needle.literals) {
          if (l.literal.charCodeAt(l.anchor) >= 128 || (l.anchorOtherCase ?? 0) >= 128 || needle.pattern.ignoreCase) return null;
          needles.push({ literal: l.literal, anchor: l.anchor, before: needle.before, rule, otherCase: l.anchorOtherCase });
        }
      } else {
        return null;
      }
    }
    return needles.length > 255 ? null : new NeedleSet(needles);
  }

  /** Fresh per-group state for `find`: no needle seen. */
  state(): number[] {
    return this.befores.map(() => -1);
  }

  /**
   * Records in `last` (per group, the greatest index where a needle starts) the needles of `text` whose
   * anchor lies at or after `from`, where `from` is where the previous call's text ended: needles cut
   * by that end are looked for again. Returns where the next call starts.
   */
  find(text: string, from: number, last: number[]): number {
    const table = this.#table;
    for (let i = Math.max(0, from - this.#overlap); i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 128 || table[c] === 0) continue;
      for (const e of this.#lists[table[c]! - 1]!) {
        const start = i - e.anchor;
        if (start > last[e.group]! && (e.caseless ? occursInAnyCase(text, e.literal, start) : occursAt(text, e.literal, start))) last[e.group] = start;
      }
    }
    return text.length;
  }

  /**
   * Sets `live[r]` to 1 for each rule `r` (by its index in the list the set was made from) whose needle
   * lies where the rule may match from `from` on, reading `text` once: a short text is read faster so
   * than by a search per needle.
   */
  markLive(text: string, from: number, live: Uint8Array): void {
    const table = this.#table;
    for (let i = Math.max(0, from - this.#farthest); i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 128 || table[c] === 0) continue;
      for (const e of this.#lists[table[c]! - 1]!) {
        const start = i - e.anchor;
        if (live[e.rule] === 0 && start >= from - e.before && (e.caseless ? occursInAnyCase(text, e.literal, start) : occursAt(text, e.literal, start))) live[e.rule] = 1;
      }
    }
  }

  /** Whether, by `last`, a needle of some group lies where a rule may match from `from` on. */
  mayMatch(last: readonly number[], from: number): boolean {
    const befores = this.befores;
    for (let g = 0; g < befores.length; g++) if (last[g]! >= Math.max(0, from - befores[g]!)) return true;
    return false;
  }
}

/** Whether `literal` occurs in `text` at `at`. */
function occursAt(text: string, literal: string, at: number): boolean {
  if (at < 0 || at + literal.length > text.length) return false;
  for (let i = 0; i < literal.length; i++) if (text.charCodeAt(at + i) !== literal.charCodeAt(i)) return false;
  return true;
}
