import type { ArchiveReader } from './archive/archive.js';
import { decodeHeader, headerLength, HEADER_PREFIX, LENGTH_BYTES, MAX_RECORD_BYTES, NONCE_BYTES, sha256, TAG_BYTES, type SessionHeader } from './record-format.js';

/** What the scanner finds, in file order; it stops after `truncated` or `bad-length`. */
export type ScanItem =
  | { readonly kind: 'header'; readonly bytes: Buffer; readonly header: SessionHeader }
  | { readonly kind: 'record'; readonly index: number; readonly offset: number; readonly frame: Buffer }
  /** The file ends inside a record: `have` of its `need` bytes are present. */
  | { readonly kind: 'truncated'; readonly index: number; readonly offset: number; readonly have: number; readonly need: number }
  /** A length prefix no record can have: the file cannot be framed past `offset`. */
  | { readonly kind: 'bad-length'; readonly index: number; readonly offset: number; readonly length: number };

/**
 * Splits a session file into its header and record frames without decrypting anything, streaming it from
 * the archive (memory stays at about one record plus one chunk of the stream). Rejects with ArchiveError
 * `ARCHIVE_NOT_FOUND` for a missing object and HeaderError for a bad header.
 */
export async function* scanSessionObject(objects: ArchiveReader, name: string): AsyncGenerator<ScanItem> {
  const stream = await objects.get(name);
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  try {
    let buf: Buffer = Buffer.alloc(0);
    let fileOffset = 0; // file offset of buf[0]
    let eof = false;
    const fill = async (need: number): Promise<boolean> => {
      if (buf.length >= need) return true;
      // Gathered, then joined once: joining per chunk would copy a large record over and over.
      const parts: Buffer[] = [buf];
      let have = buf.length;
      while (have < need && !eof) {
        const next = await chunks.next();
        if (next.done === true) eof = true;
        else {
          parts.push(next.value);
          have += next.value.length;
        }
      }
      buf = parts.length === 1 ? buf : Buffer.concat(parts, have);
      return buf.length >= need;
    };
    const consume = (n: number): Buffer => {
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      fileOffset += n;
      return out;
    };

    await fill(HEADER_PREFIX);
    const total = headerLength(buf);
    await fill(total);
    const headerBytes = Buffer.from(consume(Math.min(total, buf.length)));
    yield { kind: 'header', bytes: headerBytes, header: decodeHeader(headerBytes) };

    for (let index = 0; ; index++) {
      const offset = fileOffset;
      if (!(await fill(LENGTH_BYTES))) {
        if (buf.length > 0) yield { kind: 'truncated', index, offset, have: buf.length, need: LENGTH_BYTES };
        return;
      }
      const length = buf.readUInt32BE(0);
      if (length < NONCE_BYTES + TAG_BYTES || length > MAX_RECORD_BYTES) {
        yield { kind: 'bad-length', index, offset, length };
        return;
      }
      const need = LENGTH_BYTES + length;
      if (!(await fill(need))) {
        yield { kind: 'truncated', index, offset, have: buf.length, need };
        return;
      }
      yield { kind: 'record', index, offset, frame: Buffer.from(consume(need)) };
    }
  } finally {
    // A reader that stops early (a client gone, a header read) must still release the object.
    stream.destroy();
  }
}

/**
 * What a session file holds without decrypting it: its whole records and the SHA-256 of the last one
 * (of the header when there is none), as the seal log pins an interrupted session. A torn last record
 * is not counted, as verify does not count it.
 */
export async function sessionObjectHead(objects: ArchiveReader, name: string): Promise<{ records: number; head: string }> {
  let records = 0;
  let head = '';
  for await (const item of scanSessionObject(objects, name)) {
    if (item.kind === 'header') head = sha256(item.bytes).toString('hex');
    else if (item.kind === 'record') {
      records++;
      head = sha256(item.frame).toString('hex');
    }
  }
  return { records, head };
}

/**
 * A session file's header alone, read as two ranges (its fixed prefix, then the rest) rather than a
 * stream of the whole object. Rejects with ARCHIVE_NOT_FOUND or HeaderError.
 */
export async function readSessionHeader(objects: ArchiveReader, name: string): Promise<SessionHeader> {
  const prefix = await objects.range(name, 0, HEADER_PREFIX);
  const length = headerLength(prefix);
  return decodeHeader(await objects.range(name, 0, length));
}
