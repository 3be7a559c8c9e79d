import { TextScan, type LiteralFinder } from './text-scan.js';

/** A span of text a rule found: `[start, end)` is replaced; `value` is what the replacement is derived from. */
export interface RuleMatch {
  readonly start: number;
  readonly end: number;
  readonly value: string;
  /** Where the whole match starts, when only part of it is masked (a JSON key's value); default `start`. */
  readonly anchor?: number;
}

/**
 * A match a rule may report, before its check: `[start, end)` is the longest span it can cover; the
 * check (a checksum, a library's validation) may refute it or keep a shorter span.
 */
export interface RuleCandidate extends RuleMatch {
  /** Where the whole match starts (a JSON key's value is decided once its key is). */
  readonly anchor: number;
  /** False until the rule's check has passed; a rule without a check reports checked candidates. */
  readonly checked: boolean;
}

/**
 * A rule's matches in one text, in order of start, produced on demand: a masker looks at the front one,
 * checks it only when the check can change what is masked, and passes over it. A costly check (phone
 * validation) is never spent on a span already masked by another rule.
 */
export interface RuleCursor {
  /** The front candidate, or null when the rule has no more. */
  peek(): RuleCandidate | null;
  /** Checks the front candidate: afterwards it is at the front checked (maybe shorter), or gone. */
  check(): void;
  /**
   * Passes over the front candidate. A checked one is passed over whole; one never checked only up to
   * just after its start, as a refuted one would be, so no match it might hide is lost.
   */
  skip(): void;
  /**
   * Passes over the front candidate, which lies inside a span already masked that ends at `end`. Later
   * candidates that could only lie inside that span too may be passed over unsearched: they would be
   * passed over unchecked all the same.
   */
  skipWithin(end: number): void;
}

/**
 * One rule that finds sensitive spans in text (a detector, a regex rule, the text form of `json_keys`).
 * Rules look back at most CONTEXT_CHARS before `from`, so a stream can drop what it has already sent.
 */
export interface TextRule {
  /** What is found (`email`, a regex rule's name, a JSON key): the summary's entity. */
  readonly entity: string;
  /** Which configured rule found it (`detector:email`, `regex:account`): the summary's rule. */
  readonly rule: string;
  /** Upper-case label of the replacement (`EMAIL`). */
  readonly label: string;
  /** A fixed replacement (a regex rule's `replace`) used by the redact style instead of `[LABEL]`. */
  readonly fixed?: string;
  /** What every match contains: text without it has no match, and a masker passes it over at once. */
  readonly contains?: Needle;
  /**
   * The matches anchored in `[from, until)`; costly checks draw on the exchange's `checks`. A stream
   * holds back the text from `until` on: searching it again on every delta would cost its length each time.
   */
  cursor(text: string, from: number, until: number, checks: CheckBudget, scan?: TextScan): RuleCursor;
  /**
   * The earliest index at which a match could start that more text might still change (extend,
   * complete or refute); `text.length` when every match is already decided.
   */
  holdFrom(text: string, from: number): number;
  /**
   * What `holdFrom` reads when it holds back a trailing run of characters: a masker with many such
   * rules finds all their runs in one backward pass (HoldBack) instead of one pass per rule.
   */
  readonly holdShape?: HoldShape;
}

/** A hold-back decided by a run of characters: see PatternRuleOptions.chars and starts. */
export interface HoldShape {
  readonly chars: RegExp;
  readonly starts?: RegExp;
  readonly maxLength: number;
}

/**
 * Room past a match's maximal length for the look-aheads that end it (`(?!\d)`, `(?!\.\d)`): a match
 * reaching that close to the end of the text is not decided yet.
 */
export const LOOKAHEAD_SLACK = 4;

/** A pattern every match of a rule contains, at most `before` characters before the match's start. */
export interface Needle {
  /** What to search for; global, and case-insensitive only where the rule is. */
  readonly pattern: RegExp;
  /** 0 when the needle is inside the match; more when it sits in a look-behind. */
  readonly before: number;
  /**
   * The pattern's alternatives when they are all plain strings: then the needle is looked for with
   * `indexOf`, which skips through text many times faster than a regular expression steps through it.
   */
  readonly literals?: readonly LiteralFinder[];
  /**
   * True when every match holds a run of ASCII digits starting inside it: the pass's TextScan, which
   * finds digit runs for every rule at once, answers instead of the pattern.
   */
  readonly digitRun?: boolean;
}

/** Whether `needle` occurs in `text` from `at`; `scan` is the pass's shared scan of `text`. */
export function hasNeedle(needle: Needle, text: string, at: number, scan?: TextScan): boolean {
  if (needle.digitRun === true && scan !== undefined) return scan.digitRunAt(at) !== -1;
  const { literals } = needle;
  if (literals !== undefined) {
    // Through the scan, what is found is kept: a rule whose starts are these literals resumes from it.
    for (const literal of literals) if ((scan === undefined ? literal.find(text, at) : scan.literalAt(literal, at)) !== -1) return true;
    return false;
  }
  needle.pattern.lastIndex = at;
  return needle.pattern.test(text);
}

/** Costly checks every exchange may run before its text earns more (see CheckBudget). */
const COSTLY_CHECKS_BASE = 64;
/** Characters of text scanned that earn one more costly check. */
const CHARS_PER_COSTLY_CHECK = 256;
/** Verdicts remembered per exchange. */
const VERDICT_MEMO_MAX = 4096;

/**
 * The costly checks (a phone number's validation takes 10–50 µs) one exchange may run: a base, plus
 * one per CHARS_PER_COSTLY_CHECK characters scanned, so their cost stays a small constant per character
 * however densely a text packs candidates ("1 1 1 1 …"). Past the budget a candidate is decided by its
 * shape alone, in the direction that masks it: an attacker who pads a text cannot make a value pass.
 * Verdicts are remembered, so a repeated candidate costs one check.
 */
export class CheckBudget {
  #left = COSTLY_CHECKS_BASE;
  /** Made when the first verdict is remembered: most exchanges run no costly check. */
  #memo: Map<string, number> | null = null;

  /** Earns the allowance of `chars` more characters scanned. */
  credit(chars: number): void {
    this.#left += chars / CHARS_PER_COSTLY_CHECK;
  }

  /** Takes one costly check from the budget; false once it is spent. */
  spend(): boolean {
    if (this.#left < 1) return false;
    this.#left--;
    return true;
  }

  /** A verdict remembered for `key` (a check's own choice of key), or undefined. */
  recall(key: string): number | undefined {
    return this.#memo?.get(key);
  }

  /** Remembers a verdict reached by checking, never one decided because the budget was spent. */
  remember(key: string, verdict: number): void {
    const memo = (this.#memo ??= new Map());
    if (memo.size < VERDICT_MEMO_MAX) memo.set(key, verdict);
  }
}

/** Characters of left context a stream keeps so look-behinds and boundaries see what came before. */
export const CONTEXT_CHARS = 64;

/** Options of a rule built from a global regular expression. */
export interface PatternRuleOptions {
  readonly entity: string;
  readonly rule: string;
  readonly label: string;
  readonly fixed?: string;
  /** Must carry the `g` flag; `d` as well when `group` is given. */
  readonly pattern: RegExp;
  /** Longest text a match can span; bounds the hold-back. */
  readonly maxLength: number;
  /**
   * Every character a match can contain. The hold-back is then only the trailing run of such characters
   * (a match cannot cross any other character). Without it, the hold-back is the whole `maxLength` window.
   */
  readonly chars?: RegExp;
  /** The characters a match can start with; a held run begins at its first such character. */
  readonly starts?: RegExp;
  /** An anchored-at-end pattern finding where an unfinished match could begin (instead of `chars`). */
  readonly partial?: RegExp;
  /**
   * The character every match of `partial` begins with: the search starts at its first occurrence
   * (found by indexOf), and text without one holds nothing back.
   */
  readonly partialStart?: string;
  /**
   * Checks a candidate (checksum, a library's validation): true keeps it, false rejects it, a positive
   * number keeps only that many leading characters ("4111 1111 1111 1111 2" keeps the card).
   */
  readonly validate?: (value: string, checks: CheckBudget) => boolean | number;
  /** Named group whose span is the masked part (the value of a JSON key); default the whole match. */
  readonly group?: string;
  /**
   * The first index at or after `at` where a match could start, or -1: the pattern is then tried at
   * those indices only (a needle such as the `@` of an email finds them far faster than the pattern).
   * It must never skip an index where the pattern matches. `scan` is shared by the rules of one pass.
   */
  readonly nextStart?: (text: string, at: number, scan: TextScan) => number;
  /** What every match contains (see TextRule.contains). */
  readonly contains?: Needle;
  /**
   * The characters a match can end with. With `chars` and `maxLength` it bounds where a match from a
   * given start can end, so that candidates inside a span already masked are passed over unsearched.
   */
  readonly ends?: RegExp;
}

/** A TextRule from a regular expression, with checksum validation and a bounded, character-aware hold-back. */
export function patternRule(options: PatternRuleOptions): TextRule {
  const { pattern, maxLength, chars, starts, partial } = options;
  if (!pattern.global) throw new TypeError(`pattern of ${options.rule} must be global`);
  if (options.group !== undefined && options.validate !== undefined) throw new TypeError(`${options.rule}: a group rule has no check`);
  const inRun = chars === undefined ? undefined : charTest(chars);
  const canStart = starts === undefined ? undefined : charTest(starts);
  const sticky = options.nextStart === undefined ? null : new RegExp(pattern.source, `${pattern.flags.replace('g', '')}y`);
  const sealed = inRun === undefined || options.ends === undefined ? undefined : sealedAt(inRun, charTest(options.ends), maxLength);
  return {
    entity: options.entity,
    rule: options.rule,
    label: options.label,
    fixed: options.fixed,
    contains: options.contains,
    holdShape: chars !== undefined && partial === undefined ? { chars, starts, maxLength } : undefined,
    cursor: (text, from, until, checks, scan) => new PatternCursor(options, sticky, sealed, text, from, until, checks, scan ?? new TextScan(text, from)),
    holdFrom(text, from) {
      const floor = Math.max(from, text.length - maxLength - LOOKAHEAD_SLACK);
      if (partial !== undefined) {
        const start = options.partialStart === undefined ? floor : text.indexOf(options.partialStart, floor);
        if (start === -1) return text.length;
        partial.lastIndex = start;
        const m = partial.exec(text);
        return m === null ? text.length : m.index;
      }
      if (inRun === undefined) return floor;
      let i = text.length;
      while (i > floor && inRun(text.charCodeAt(i - 1))) i--;
      if (canStart !== undefined) while (i < text.length && !canStart(text.charCodeAt(i))) i++;
      return i;
    },
  };
}

/**
 * Whether no match that starts before `end` can go on past it: from `end` on, the run of characters a
 * match can contain (no longer than a match) holds none it can end with.
 */
function sealedAt(inRun: (code: number) => boolean, isEnd: (code: number) => boolean, maxLength: number): (text: string, end: number) => boolean {
  return (text, end) => {
    const limit = Math.min(text.length, end + maxLength);
    for (let i = end; i < limit; i++) {
      const c = text.charCodeAt(i);
      if (!inRun(c)) return true;
      if (isEnd(c)) return false;
    }
    return true;
  };
}

/**
 * A one-character class as a test on a UTF-16 code unit: a table for ASCII, the expression beyond it.
 * Hold-backs test every trailing character of every delta, so this is on the hot path of a stream.
 */
function charTest(cls: RegExp): (code: number) => boolean {
  const ascii = new Uint8Array(128);
  for (let c = 0; c < 128; c++) ascii[c] = cls.test(String.fromCharCode(c)) ? 1 : 0;
  return (code) => (code < 128 ? ascii[code] === 1 : cls.test(String.fromCharCode(code)));
}

/**
 * One pattern rule's matches in one text, found as the masker asks for them. The cursor is its own
 * front candidate (its fields are the candidate's): a masker looks at a few candidates per value it
 * masks, and an object per candidate, with another for the search state behind it, cost more than the
 * looking.
 */
class PatternCursor implements RuleCursor, RuleCandidate {
  start = 0;
  end = 0;
  value = '';
  anchor = 0;
  checked = false;
  readonly #options: PatternRuleOptions;
  readonly #sticky: RegExp | null;
  readonly #sealed: ((text: string, end: number) => boolean) | undefined;
  readonly #text: string;
  readonly #until: number;
  readonly #checks: CheckBudget;
  readonly #scan: TextScan;
  #resumeAt: number;
  /** Whether the front is known: a candidate in the fields (#found), or none. */
  #searched = false;
  #found = false;
  /** The end of the match #find found last, and the match itself when the rule has a group. */
  #matchEnd = 0;
  #groupMatch: RegExpExecArray | null = null;
  /** Where the search resumes once the front candidate is passed over or taken. */
  #passAt = 0;
  /**
   * The end of the masked span the cursor was last passed over inside (see skipWithin), and whether no
   * match of the rule starting inside it can go on past it: its candidates inside need no search then.
   */
  #within = -1;
  #withinSealed = false;

  constructor(
    options: PatternRuleOptions,
    sticky: RegExp | null,
    sealed: ((text: string, end: number) => boolean) | undefined,
    text: string,
    from: number,
    until: number,
    checks: CheckBudget,
    scan: TextScan,
  ) {
    this.#options = options;
    this.#sticky = sticky;
    this.#sealed = sealed;
    this.#text = text;
    this.#until = until;
    this.#checks = checks;
    this.#scan = scan;
    this.#resumeAt = from;
  }

  peek(): RuleCandidate | null {
    if (!this.#searched) this.#search();
    return this.#found ? this : null;
  }

  skip(): void {
    if (!this.#searched || !this.#found) return;
    this.#resumeAt = this.#passAt;
    this.#searched = false;
  }

  skipWithin(end: number): void {
    this.skip();
    if (end <= this.#within) return;
    this.#within = end;
    this.#withinSealed = this.#sealed !== undefined && this.#sealed(this.#text, end);
  }

  check(): void {
    const validate = this.#options.validate;
    if (!this.#searched || !this.#found || this.checked || validate === undefined) return;
    // A rule with a check has no group: the candidate is the whole match.
    const verdict = validate(this.value, this.#checks);
    if (verdict === false || verdict === 0) {
      // A failed candidate may hide a valid one starting inside it ("0 4111 1111 1111 1111").
      this.#resumeAt = this.start + 1;
      this.#searched = false;
    } else if (verdict === true) {
      this.#passAt = this.end;
      this.checked = true;
    } else {
      this.end = this.start + verdict;
      this.value = this.value.slice(0, verdict);
      this.#passAt = this.end;
      this.checked = true;
    }
  }

  /** Finds the front candidate from #resumeAt: into the fields (#found), or none (#found false). */
  #search(): void {
    const { group, validate } = this.#options;
    this.#searched = true;
    for (;;) {
      const start = this.#find(this.#resumeAt);
      this.#found = start !== -1;
      if (start === -1) return;
      const matchEnd = this.#matchEnd;
      if (matchEnd === start) {
        this.#resumeAt = start + 1;
        continue;
      }
      if (group === undefined) {
        // Passed over unchecked, the search resumes just after its start, as after a refuted candidate.
        this.#passAt = validate === undefined ? matchEnd : start + 1;
        this.#candidate(start, matchEnd, this.#text.slice(start, matchEnd), start, validate === undefined);
        return;
      }
      const match = this.#groupMatch!;
      const span = match.indices?.groups?.[group];
      const value = match.groups?.[group];
      if (span === undefined || value === undefined || value === '') {
        this.#resumeAt = matchEnd;
        continue;
      }
      this.#passAt = matchEnd;
      this.#candidate(span[0], span[1], value, start, true);
      return;
    }
  }

  #candidate(start: number, end: number, value: string, anchor: number, checked: boolean): void {
    this.start = start;
    this.end = end;
    this.value = value;
    this.anchor = anchor;
    this.checked = checked;
  }

  /**
   * Where the next match from `at` starts (-1: none before `until`); its end in #matchEnd, and for a
   * rule with a group the match itself in #groupMatch. A rule tried at its starts asks its pattern only
   * whether it matches there: the match array exec would build goes unread.
   */
  #find(at: number): number {
    const text = this.#text;
    const nextStart = this.#options.nextStart;
    const sticky = this.#sticky;
    if (sticky === null || nextStart === undefined || this.#options.group !== undefined) {
      const { pattern } = this.#options;
      pattern.lastIndex = at;
      const match = pattern.exec(text);
      if (match === null || match.index >= this.#until) return -1;
      this.#groupMatch = match;
      this.#matchEnd = match.index + match[0].length;
      return match.index;
    }
    const scan = this.#scan;
    // Inside a masked span that no match can go on past, a match would only be passed over: the search
    // goes on from its end.
    const skipTo = this.#withinSealed ? this.#within : -1;
    for (let start = nextStart(text, Math.max(at, skipTo), scan); start !== -1 && start < this.#until; start = nextStart(text, start + 1, scan)) {
      sticky.lastIndex = start;
      if (sticky.test(text)) {
        this.#matchEnd = sticky.lastIndex;
        return start;
      }
    }
    return -1;
  }
}

/** `s` as a regular expression matching it literally. */
export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
