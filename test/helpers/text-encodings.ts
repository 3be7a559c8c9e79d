/** `s` in UTF-16 big-endian, which Node's Buffer does not write itself. */
export function utf16be(s: string): Buffer {
  return Buffer.from(s, 'utf16le').swap16();
}

/** `s` in UTF-32, little- or big-endian, which Node's Buffer does not write itself. */
export function utf32(s: string, littleEndian: boolean): Buffer {
  const points = [...s].map((c) => c.codePointAt(0)!);
  const out = Buffer.alloc(points.length * 4);
  points.forEach((p, i) => (littleEndian ? out.writeUInt32LE(p, i * 4) : out.writeUInt32BE(p, i * 4)));
  return out;
}
