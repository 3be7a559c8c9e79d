import { createHmac } from 'node:crypto';

/** How a masked value is written: `[EMAIL]`, `****1234` or `<EMAIL:3f9a1c>`. */
export type MaskingStyle = 'redact' | 'partial' | 'hash';

/** What a replacement needs besides the value. */
export interface ReplacementOptions {
  readonly style: MaskingStyle;
  /** HMAC key of the hash style; required by the schema whenever a profile uses it. */
  readonly hashKey?: string;
}

/** Builds the replacement for one value; `label` is the upper-case entity (`EMAIL`). */
export function replacementFor(value: string, label: string, options: ReplacementOptions): string {
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
  }
}
