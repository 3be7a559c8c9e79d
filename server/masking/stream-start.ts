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
