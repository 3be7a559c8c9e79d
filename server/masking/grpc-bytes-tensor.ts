/**
 * The elements of a BYTES tensor in raw form (KServe v2 `raw_input_contents` / `raw_output_contents`):
 * each element is a 4-byte little-endian length followed by that many bytes.
 */

/** The elements of one raw BYTES tensor; null when the bytes are not laid out as elements (a length runs past the end). */
export function splitBytesTensor(raw: Uint8Array): Buffer[] | null {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const elements: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    if (at + 4 > buf.length) return null;
    const length = buf.readUInt32LE(at);
    at += 4;
    if (at + length > buf.length) return null;
    elements.push(buf.subarray(at, at + length));
    at += length;
  }
  return elements;
}

/** A raw BYTES tensor of `elements`, each with its (rewritten) length before it. */
export function joinBytesTensor(elements: readonly Uint8Array[]): Buffer {
  let size = 0;
  for (const e of elements) size += 4 + e.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const e of elements) {
    out.writeUInt32LE(e.length, at);
    out.set(e, at + 4);
    at += 4 + e.length;
  }
  return out;
}
