/**
 * What one masking pass over a text learns once for all its rules: where the runs of ASCII digits
 * start. Cards, SSNs, IPv4 addresses, phone numbers and IBANs can only begin at (or a character or two
 * before) such a start, so those rules try their pattern there alone instead of each scanning the whole
 * text: prose carries few digit runs, and one shared search finds them all.
 */
export class TextScan {
  readonly text: string;
  readonly #from: number;
  /** The digit runs from `from` on: their starts and ends, ascending; null until first asked for. */
  #starts: number[] | null = null;
  #ends: number[] | null = null;
  /** Per literal: the last search's start and what it found (-1: nothing from there on). */
  readonly #literals = new Map<LiteralFinder, { from: number; at: number }>();

  /** A scan of `text` from `from`: runs that start before it are never asked for. */
  constructor(text: string, from = 0) {
    this.text = text;
    this.#from = from;
  }

  /** The index of the first digit run starting at or after `at`, or -1 (see runStart, runEnd). */
  runAt(at: number): number {
    if (this.#starts === null) this.#findRuns();
    const starts = this.#starts!;
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! < at) lo = mid + 1;
      else hi = mid;
    }
    return lo < starts.length ? lo : -1;
  }

  /** Runs found (indices of runAt go up to this, exclusive). */
  get runs(): number {
    if (this.#starts === null) this.#findRuns();
    return this.#starts!.length;
  }

  /** Where run `i` starts: its first digit (the character before it is no digit). */
  runStart(i: number): number {
    return this.#starts![i]!;
  }

  /** Where run `i` ends: the first character after its last digit. */
  runEnd(i: number): number {
    return this.#ends![i]!;
  }

  /** The first index at or after `at` where a run of digits starts, or -1. */
  digitRunAt(at: number): number {
    const i = this.runAt(at);
    return i === -1 ? -1 : this.#starts![i]!;
  }

  /**
   * Finds every run at once. Each digit character is looked for with a single-character indexOf,
   * which runs at memchr speed where a pattern for any digit steps through every character; each
   * search resumes where the last one for that digit stopped. Where runs come thick (tables, lists of
   * numbers), the pattern is cheaper than ten searches per run, and the rest is scanned with it.
   */
  #findRuns(): void {
    const text = this.text;
    const nextOf = new Int32Array(10).fill(-1);
    const starts: number[] = [];
    const ends: number[] = [];
    let at = this.#from;
    let dense = false;
    for (;;) {
      let first = NONE;
      if (dense) {
        DIGIT.lastIndex = at;
        // `test` on a global pattern moves lastIndex past the digit without building a match array.
        if (DIGIT.test(text)) first = DIGIT.lastIndex - 1;
      } else {
        for (let d = 0; d < 10; d++) {
          let next = nextOf[d]!;
          if (next < at) {
            next = text.indexOf(DIGITS[d]!, at);
            if (next === -1) next = NONE;
            nextOf[d] = next;
          }
          if (next < first) first = next;
        }
      }
      if (first === NONE) break;
      let end = first + 1;
      while (end < text.length && isDigit(text.charCodeAt(end))) end++;
      at = end;
      // A digit right at `from` may continue a run that began before it: not a start.
      if (first > 0 && isDigit(text.charCodeAt(first - 1))) continue;
      starts.push(first);
      ends.push(end);
      if (starts.length === DENSE_RUNS && at - this.#from < DENSE_RUNS * DENSE_GAP) dense = true;
    }
    this.#starts = starts;
    this.#ends = ends;
  }

  /**
   * The first index at or after `at` where `literal` occurs, or -1. Each literal's last answer is kept,
   * so a rule asking again and again further on never searches the same stretch twice.
   */
  literalAt(literal: LiteralFinder, at: number): number {
    const known = this.#literals.get(literal);
    if (known !== undefined && known.from <= at && (known.at === -1 || known.at >= at)) return known.at;
    const found = literal.find(this.text, at);
    if (known === undefined) this.#literals.set(literal, { from: at, at: found });
    else {
      known.from = at;
      known.at = found;
    }
    return found;
  }
}

const DIGITS = '0123456789';
/** Beyond any index of a string. */
const NONE = 0x7fffffff;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Past this many runs, runs closer than DENSE_GAP characters on average are found by a pattern instead. */
const DENSE_RUNS = 32;
const DENSE_GAP = 48;
const DIGIT = /\d/g;

/** A plain string searched for in texts. */
export interface LiteralFinder {
  readonly literal: string;
  /** The first index at or after `at` where the literal occurs, or -1. */
  find(text: string, at: number): number;
}

/** Lower-case letters and common punctuation, most frequent first in English prose and JSON. */
const COMMON = ' etaoinshrdlucmfwypvbgkjqxz.,":-';

/**
 * A finder of `literal` that looks for its least common character (by English and JSON frequency)
 * alone, which `indexOf` finds at memchr speed, and compares the literal around each one found.
 * `indexOf` of the whole literal starts from its first character and is slow when that one is common:
 * "eyJ" would stop at every "e" of a text where its "J" is rare, and "logprob" costs as much as a
 * regular expression stepping through every character.
 */
export function literalFinder(literal: string): LiteralFinder {
  let anchor = 0;
  let rarest = -1;
  for (let i = 0; i < literal.length; i++) {
    const rank = COMMON.indexOf(literal[i]!);
    // Not among the common ones (upper case, digits, "_", "@"): rarer than any of them.
    const rarity = rank === -1 ? COMMON.length : rank;
    if (rarity > rarest) {
      rarest = rarity;
      anchor = i;
    }
  }
  // The literal from its anchor on is searched natively (its first character is the rare one); the
  // characters before the anchor are compared at each place found.
  const tail = literal.slice(anchor);
  if (anchor === 0) return { literal, find: (text, at) => text.indexOf(literal, at) };
  const head = literal.slice(0, anchor);
  return {
    literal,
    find(text, at) {
      for (let found = text.indexOf(tail, at + anchor); found !== -1; found = text.indexOf(tail, found + 1)) {
        if (occursAt(text, head, found - anchor)) return found - anchor;
      }
      return -1;
    },
  };
}

/** Whether `literal` occurs in `text` at `at` (compared by code unit: startsWith costs more for a short literal). */
function occursAt(text: string, literal: string, at: number): boolean {
  if (at < 0 || at + literal.length > text.length) return false;
  for (let i = 0; i < literal.length; i++) if (text.charCodeAt(at + i) !== literal.charCodeAt(i)) return false;
  return true;
}
