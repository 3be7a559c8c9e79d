/**
 * Finds the placeholders masking left in recorded text, in the three styles the gateway writes:
 * redact (`[EMAIL]`, or a rule's own `[ACCOUNT]`), hash (`<EMAIL:3f9a1c>`) and partial (`****1234`).
 */
const MASK_MARKER = /\[[A-Z][A-Z0-9_]+\]|<[A-Z][A-Z0-9_]*:[0-9a-f]{4,}>|\*{4,}[0-9A-Za-z]{0,4}/g;

/** A run of text, flagged when it is a masking placeholder. */
export interface TextSegment {
  readonly text: string;
  readonly masked: boolean;
}

/** Splits text into plain runs and masking placeholders, in order; joined, they give the text back. */
export function maskedSegments(text: string): TextSegment[] {
  const out: TextSegment[] = [];
  let last = 0;
  for (const m of text.matchAll(MASK_MARKER)) {
    const start = m.index;
    if (start > last) out.push({ text: text.slice(last, start), masked: false });
    out.push({ text: m[0], masked: true });
    last = start + m[0].length;
  }
  if (last < text.length) out.push({ text: text.slice(last), masked: false });
  return out;
}
