import { createHmac } from 'node:crypto';

/** How a masked value is written: `[EMAIL]`, `****1234`, `<EMAIL:3f9a1c>` or an exchange's `<EMAIL_1>`. */
export type MaskingStyle = 'redact' | 'partial' | 'hash' | 'placeholder';

/** What a replacement needs besides the value. */
export interface ReplacementOptions {
  readonly style: MaskingStyle;
  /** HMAC key of the hash style; required by the schema whenever a profile uses it. */
  readonly hashKey?: string;
  /**
   * Writes the replacement in place of the style: set per exchange, where a replacement depends on the
   * exchange (its placeholders, or the values they restore). Shared profiles never carry one.
   */
  readonly write?: (value: string, label: string) => string;
}

/** Builds the replacement for one value; `label` is the upper-case entity (`EMAIL`). */
export function replacementFor(value: string, label: string, options: ReplacementOptions): string {
  if (options.write !== undefined) return options.write(value, label);
  switch (options.style) {
    case 'redact':
      return `[${label}]`;
    case 'partial':
      // A short value would lose half of itself to "last 4 kept": show none of it.
      return value.length < 8 ? '****' : `****${value.slice(-4)}`;
    case 'hash': {
      const digest = createHmac('sha256', options.hashKey ?? '').update(value).digest('hex');
      return `<${label}:${digest.slice(0, 6)}>`;
    }
    case 'placeholder':
      // Outside an exchange that keeps placeholders (an answer, a recording) there is no map to number
      // them by: the value is removed as the redact style removes it.
      return `[${label}]`;
  }
}
