/** A span of text a rule found: `[start, end)` is replaced; `value` is what the replacement is derived from. */
export interface RuleMatch {
  readonly start: number;
  readonly end: number;
  readonly value: string;
  /** Where the whole match starts, when only part of it is masked (a JSON key's value); default `start`. */
  readonly anchor?: number;
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
  /** Calls `onMatch` for every match starting at or after `from`, in order of start. */
  scan(text: string, from: number, onMatch: (m: RuleMatch) => void): void;
  /**
   * The earliest index at which a match could start that more text might still change (extend,
   * complete or refute); `text.length` when every match is already decided.
   */
  holdFrom(text: string, from: number): number;
}

/** Characters of left context a stream keeps so look-behinds and boundaries see what came before. */
export const CONTEXT_CHARS = 64;

/**
 * Room past a match's maximal length for the look-aheads that end it (`(?!\d)`, `(?!\.\d)`): a match
 * reaching that close to the end of the text is not decided yet.
 */
const LOOKAHEAD_SLACK = 4;

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
   * Checks a candidate (checksum, a library's validation): true keeps it, false rejects it, a positive
   * number keeps only that many leading characters ("4111 1111 1111 1111 2" keeps the card).
   */
  readonly validate?: (match: RegExpExecArray) => boolean | number;
  /** Named group whose span is the masked part (the value of a JSON key); default the whole match. */
  readonly group?: string;
}

/** A TextRule from a regular expression, with checksum validation and a bounded, character-aware hold-back. */
export function patternRule(options: PatternRuleOptions): TextRule {
  const { pattern, maxLength, chars, starts, partial, validate, group } = options;
  if (!pattern.global) throw new TypeError(`pattern of ${options.rule} must be global`);
  return {
    entity: options.entity,
    rule: options.rule,
    label: options.label,
    fixed: options.fixed,
    scan(text, from, onMatch) {
      pattern.lastIndex = from;
      let m: RegExpExecArray | null;
      while ((m = pattern.exec(text)) !== null) {
        if (m[0] === '') {
          pattern.lastIndex = m.index + 1;
          continue;
        }
        const verdict = validate === undefined ? true : validate(m);
        if (verdict === false || verdict === 0) {
          // A failed candidate may hide a valid one starting inside it ("0 4111 1111 1111 1111").
          pattern.lastIndex = m.index + 1;
          continue;
        }
        if (verdict !== true) {
          onMatch({ start: m.index, end: m.index + verdict, value: m[0].slice(0, verdict) });
          pattern.lastIndex = m.index + verdict;
        } else if (group === undefined) {
          onMatch({ start: m.index, end: m.index + m[0].length, value: m[0] });
        } else {
          const span = m.indices?.groups?.[group];
          const value = m.groups?.[group];
          if (span !== undefined && value !== undefined && value !== '') onMatch({ start: span[0], end: span[1], value, anchor: m.index });
        }
      }
    },
    holdFrom(text, from) {
      const floor = Math.max(from, text.length - maxLength - LOOKAHEAD_SLACK);
      if (partial !== undefined) {
        partial.lastIndex = floor;
        const m = partial.exec(text);
        return m === null ? text.length : m.index;
      }
      if (chars === undefined) return floor;
      let i = text.length;
      while (i > floor && chars.test(text[i - 1]!)) i--;
      if (starts !== undefined) while (i < text.length && !starts.test(text[i]!)) i++;
      return i;
    },
  };
}
