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
  /**
   * Per anchor character searched, in threes: the character, the last search's start and what it found
   * (-1: nothing from there on). Literals sharing one (`rk_`, `sk_`, `ghp_` …) search the text for it
   * once. A short flat list: a pass searches for a dozen characters or so.
   */
  #anchors: number[] | null = null;
  /** This pass's mark on the answers literals keep (see LiteralFinder.memo): it holds nothing of the text. */
  readonly #pass = {};

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

  /**
   * Where each run starts, by index (see runStart): the list itself, for a rule that walks the runs
   * (indexing it costs less than a call per run).
   */
  get runStarts(): readonly number[] {
    if (this.#starts === null) this.#findRuns();
    return this.#starts!;
  }

  /** Where each run ends, by index (see runEnd). */
  get runEnds(): readonly number[] {
    if (this.#starts === null) this.#findRuns();
    return this.#ends!;
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
    // A plain array: a typed one costs more to make than the few runs of most texts cost to find.
    const nextOf = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
    const starts: number[] = [];
    const ends: number[] = [];
    let at = this.#from;
    let dense = false;
    for (;;) {
      let first = NONE;
      // The digits of one value come in runs a character or two apart ("+1 415 555 0134"): the next
      // few characters are looked at first, which spares the searches of every digit they would cost.
      const near = Math.min(text.length, at + NEAR_RUN);
      for (let i = at; i < near; i++) {
        if (isDigit(text.charCodeAt(i))) {
          first = i;
          break;
        }
      }
      if (first !== NONE) {
        // Found close by: nothing to search.
      } else if (dense) {
        // `test` on a global pattern moves lastIndex past the digit without building a match array.
        DIGIT.lastIndex = near;
        if (DIGIT.test(text)) first = DIGIT.lastIndex - 1;
      } else {
        for (let d = 0; d < 10; d++) {
          let next = nextOf[d]!;
          if (next < near) {
            next = text.indexOf(DIGITS[d]!, near);
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
    // The literal keeps the last answer it gave, and to which pass (see LiteralFinder.memo).
    const memo = literal.memo;
    if (memo.pass === this.#pass && memo.from <= at && (memo.at === -1 || memo.at >= at)) return memo.at;
    const found = this.#find(literal, at);
    memo.pass = this.#pass;
    memo.from = at;
    memo.at = found;
    return found;
  }

  /**
   * `literal.find(text, at)` from where its anchor character next occurs, found through the pass's
   * memory of it: the literals sharing one search the text for it once, and none is searched for in a
   * text without it.
   */
  #find(literal: LiteralFinder, at: number): number {
    let found = this.#nextAnchor(literal.anchorCode, at + literal.anchor);
    if (literal.anchorOtherCase !== undefined) {
      const other = this.#nextAnchor(literal.anchorOtherCase, at + literal.anchor);
      if (other !== -1 && (found === -1 || other < found)) found = other;
    }
    if (found === -1) return -1;
    return literal.literal.length === 1 ? found : literal.find(this.text, found - literal.anchor);
  }

  /** The first index at or after `at` holding the character `code`, or -1, remembered per character. */
  #nextAnchor(code: number, at: number): number {
    const memo = (this.#anchors ??= []);
    let slot = 0;
    while (slot < memo.length && memo[slot] !== code) slot += 3;
    if (slot < memo.length) {
      const known = memo[slot + 2]!;
      if (memo[slot + 1]! <= at && (known === -1 || known >= at)) return known;
    } else {
      memo.push(code, 0, 0);
    }
    const found = this.text.indexOf(String.fromCharCode(code), at);
    memo[slot + 1] = at;
    memo[slot + 2] = found;
    return found;
  }
}

const DIGITS = '0123456789';
/** Characters after a run looked at one by one for the next run before the digits are searched for. */
const NEAR_RUN = 4;
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
  /** Index in the literal of its rarest character, the one searched for natively. */
  readonly anchor: number;
  /** That character's code unit. */
  readonly anchorCode: number;
  /** For a literal found in either case (see caselessFinder): the anchor's code unit in the other case. */
  readonly anchorOtherCase?: number;
  /** The first index at or after `at` where the literal occurs, or -1. */
  find(text: string, at: number): number;
  /**
   * The last answer a TextScan gave for this literal (where its search started, what it found) and the
   * mark of that scan's pass: one pass asks for each literal again and again further on, and an answer
   * kept here is found at once, where a table of the pass's own would be searched. Only the pass marked
   * reads it, so passes never see each other's answers; the mark holds no text.
   */
  readonly memo: { pass: object | null; from: number; at: number };
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
  const anchorCode = literal.charCodeAt(anchor);
  const memo = { pass: null, from: 0, at: -1 };
  if (anchor === 0) return { literal, anchor, anchorCode, memo, find: (text, at) => text.indexOf(literal, at) };
  const head = literal.slice(0, anchor);
  return {
    literal,
    anchor,
    anchorCode,
    memo,
    find(text, at) {
      for (let found = text.indexOf(tail, at + anchor); found !== -1; found = text.indexOf(tail, found + 1)) {
        if (occursAt(text, head, found - anchor)) return found - anchor;
      }
      return -1;
    },
  };
}

/**
 * A finder of an ASCII word in any mix of upper and lower case ("key", "kEy" … "KEY"): its rarest
 * letter is looked for in both cases, and the word compared around each one found, where a finder per
 * spelling would search the text once for each of them. `literal` is the word in lower case.
 */
export function caselessFinder(word: string): LiteralFinder {
  const lower = word.toLowerCase();
  const { anchor } = literalFinder(lower);
  const anchorCode = lower.charCodeAt(anchor);
  const lowerChar = lower[anchor]!;
  const upperChar = lowerChar.toUpperCase();
  return {
    literal: lower,
    anchor,
    anchorCode,
    anchorOtherCase: upperChar.charCodeAt(0),
    memo: { pass: null, from: 0, at: -1 },
    find(text, at) {
      let low = text.indexOf(lowerChar, at + anchor);
      let up = text.indexOf(upperChar, at + anchor);
      while (low !== -1 || up !== -1) {
        const found = up === -1 || (low !== -1 && low < up) ? low : up;
        if (occursInAnyCase(text, lower, found - anchor)) return found - anchor;
        if (found === low) low = text.indexOf(lowerChar, low + 1);
        else up = text.indexOf(upperChar, up + 1);
      }
      return -1;
    },
  };
}

/** Whether the lower-case ASCII `word` occurs in `text` at `at`, its letters in either case. */
export function occursInAnyCase(text: string, word: string, at: number): boolean {
  if (at < 0 || at + word.length > text.length) return false;
  for (let i = 0; i < word.length; i++) {
    let c = text.charCodeAt(at + i);
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== word.charCodeAt(i)) return false;
  }
  return true;
}

/** Whether `literal` occurs in `text` at `at` (compared by code unit: startsWith costs more for a short literal). */
function occursAt(text: string, literal: string, at: number): boolean {
  if (at < 0 || at + literal.length > text.length) return false;
  for (let i = 0; i < literal.length; i++) if (text.charCodeAt(at + i) !== literal.charCodeAt(i)) return false;
  return true;
}
