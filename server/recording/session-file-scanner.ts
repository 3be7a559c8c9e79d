import { open } from 'node:fs/promises';
import { decodeHeader, headerLength, HEADER_PREFIX, LENGTH_BYTES, MAX_RECORD_BYTES, NONCE_BYTES, sha256, TAG_BYTES, type SessionHeader } from './record-format.js';

/** What the scanner finds, in file order; it stops after `truncated` or `bad-length`. */
export type ScanItem =
  | { readonly kind: 'header'; readonly bytes: Buffer; readonly header: SessionHeader }
  | { readonly kind: 'record'; readonly index: number; readonly offset: number; readonly frame: Buffer }
  /** The file ends inside a record: `have` of its `need` bytes are present. */
  | { readonly kind: 'truncated'; readonly index: number; readonly offset: number; readonly have: number; readonly need: number }
  /** A length prefix no record can have: the file cannot be framed past `offset`. */
  | { readonly kind: 'bad-length'; readonly index: number; readonly offset: number; readonly length: number };

const READ_SIZE = 256 * 1024;

/**
 * Splits a session file into its header and record frames without decrypting anything, reading it in
 * bounded pieces (memory stays at about one record plus one read). Throws HeaderError for a bad header.
 */
export async function* scanSessionFile(path: string): AsyncGenerator<ScanItem> {
  const handle = await open(path, 'r');
  try {
    let buf: Buffer = Buffer.alloc(0);
    let fileOffset = 0; // file offset of buf[0]
    let eof = false;
    const fill = async (need: number): Promise<boolean> => {
      while (buf.length < need && !eof) {
        const chunk = Buffer.allocUnsafe(Math.max(READ_SIZE, need - buf.length));
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, fileOffset + buf.length);
        if (bytesRead === 0) eof = true;
        else buf = buf.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([buf, chunk.subarray(0, bytesRead)]);
      }
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
    await handle.close();
  }
}

/**
 * What a session file holds without decrypting it: its whole records and the SHA-256 of the last one
 * (of the header when there is none), as the seal log pins an interrupted session. A torn last record
 * is not counted, as verify does not count it.
 */
export async function sessionFileHead(path: string): Promise<{ records: number; head: string }> {
  let records = 0;
  let head = '';
  for await (const item of scanSessionFile(path)) {
    if (item.kind === 'header') head = sha256(item.bytes).toString('hex');
    else if (item.kind === 'record') {
      records++;
      head = sha256(item.frame).toString('hex');
    }
  }
  return { records, head };
}
