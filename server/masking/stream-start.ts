/**
 * What the first bytes of a body sent as a stream say it is: `json` when the first character past one
 * BOM and white space opens a JSON object or array (no SSE field name starts so), `stream` for anything
 * else, `undecided` while only a BOM (or part of one) and white space have arrived.
 */
export function bodyStart(bytes: Buffer): 'json' | 'stream' | 'undecided' {
  let i = 0;
  if (bytes[0] === 0xef) {
    if (bytes.length < 3) return bytes.length === 1 || bytes[1] === 0xbb ? 'undecided' : 'stream';
    if (bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3;
  }
  for (; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    return b === 0x7b || b === 0x5b ? 'json' : 'stream';
  }
  return 'undecided';
}

/**
 * A stream's leading byte-order mark, read past as clients read it: kept for the caller, but not part of
 * the first line or record. `take` is given the stream's decoded text in order.
 */
export class LeadingBom {
  #checked = false;

  /** Whether the start has been seen: `take` then returns every text as it is. */
  get taken(): boolean {
    return this.#checked;
  }

  /** The BOM to send as it is ('' when there is none, or this is not the start), and the text after it. */
  take(text: string): { bom: string; rest: string } {
    if (this.#checked || text.length === 0) return { bom: '', rest: text };
    this.#checked = true;
    return text.charCodeAt(0) === 0xfeff ? { bom: '\ufeff', rest: text.slice(1) } : { bom: '', rest: text };
  }
}
