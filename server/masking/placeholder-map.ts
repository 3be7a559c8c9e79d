/** Most distinct values one exchange may turn into placeholders: bounds the map a hostile prompt can grow. */
export const MAX_PLACEHOLDERS = 10_000;

/**
 * Matches a placeholder as `PlaceholderMap` writes it: `<EMAIL_1>`, `<CREDIT_CARD_12>`. Labels are upper-case
 * entity names (letters, digits, `_`), at most 64 characters; numbers at most 6 digits.
 */
export const PLACEHOLDER_PATTERN = /<(?<label>[A-Z][A-Z0-9_]{0,63})_(?<n>[1-9][0-9]{0,5})>/g;

/** Longest placeholder `PLACEHOLDER_PATTERN` accepts: what a stream holds back, at most, while one may be under way. */
export const MAX_PLACEHOLDER_LENGTH = 1 + 64 + 1 + 6 + 1;

/**
 * The placeholders of one exchange: each distinct value gets one stable token (`<EMAIL_1>`, the same
 * value the same token wherever the request holds it), numbered per label in the order first met.
 * Lives in memory with its exchange only: it is never recorded, logged or shared between exchanges,
 * since it holds the very values request masking keeps from the upstream.
 */
export class PlaceholderMap {
  /** label → value → token. */
  readonly #tokens = new Map<string, Map<string, string>>();
  /** token → value. */
  readonly #values = new Map<string, string>();

  /** The token of `value` under `label`, given it the first time it is met. */
  tokenFor(value: string, label: string): string {
    let byValue = this.#tokens.get(label);
    if (byValue === undefined) {
      byValue = new Map();
      this.#tokens.set(label, byValue);
    }
    const known = byValue.get(value);
    if (known !== undefined) return known;
    if (this.#values.size >= MAX_PLACEHOLDERS) {
      // Past the bound every further value is still removed, without a way back: fail closed, never leak.
      return `[${label}]`;
    }
    const token = `<${label}_${byValue.size + 1}>`;
    byValue.set(value, token);
    this.#values.set(token, value);
    return token;
  }

  /** The value a token stands for; undefined for a token this exchange never gave out (altered or invented). */
  valueOf(token: string): string | undefined {
    return this.#values.get(token);
  }

  /** Every token given out and the value it stands for, in the order given: for `sluice mask test --request` only. */
  entries(): [token: string, value: string][] {
    return [...this.#values];
  }

  /** How many tokens were given out. */
  get size(): number {
    return this.#values.size;
  }
}
