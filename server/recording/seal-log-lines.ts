import { open } from 'node:fs/promises';
import { MAX_SEAL_LINE } from './seal-log-format.js';

/** One line of a line file: its text (no newline), byte offset, and whether a newline ended it. */
export interface FileLine {
  readonly text: string;
  readonly offset: number;
  /** False for a last line the file ends inside (a crash mid-append, or a cut). */
  readonly complete: boolean;
  /** The line was longer than MAX_SEAL_LINE and is cut there (it cannot be an entry). */
  readonly overlong: boolean;
}

const READ_SIZE = 64 * 1024;

/**
 * The lines of a file, read in bounded pieces: memory stays at about one read plus one line, whatever
 * the file's size. Throws ENOENT for a missing file.
 */
export async function* readFileLines(path: string): AsyncGenerator<FileLine> {
  const handle = await open(path, 'r');
  try {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let lineStart = 0;
    let position = 0;
    let overlong = false;
    const chunk = Buffer.allocUnsafe(READ_SIZE);
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, READ_SIZE, position);
      if (bytesRead === 0) break;
      let from = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, from);
        if (nl < 0 || nl >= bytesRead) break;
        const piece = chunk.subarray(from, nl);
        const text = Buffer.concat([...pending, overlong ? Buffer.alloc(0) : piece]).toString('utf8');
        yield { text, offset: lineStart, complete: true, overlong: overlong || pendingBytes + piece.length > MAX_SEAL_LINE };
        pending = [];
        pendingBytes = 0;
        overlong = false;
        lineStart = position + nl + 1;
        from = nl + 1;
      }
      if (from < bytesRead && !overlong) {
        const rest = Buffer.from(chunk.subarray(from, bytesRead));
        if (pendingBytes + rest.length > MAX_SEAL_LINE) {
          // Keep nothing more of a line that cannot be an entry; only its end is looked for.
          overlong = true;
        } else {
          pending.push(rest);
          pendingBytes += rest.length;
        }
      }
      position += bytesRead;
    }
    if (pendingBytes > 0 || overlong) yield { text: Buffer.concat(pending).toString('utf8'), offset: lineStart, complete: false, overlong };
  } finally {
    await handle.close();
  }
}

/** The file's first and last complete lines, its size, and where its complete lines end (a torn line after that). */
export interface LineFileEnds {
  readonly size: number;
  readonly first?: string;
  readonly last?: string;
  /** Byte offset just past the last newline. */
  readonly wholeLength: number;
}

/**
 * Reads the first line and the last complete line without reading the file in between, so opening a
 * long log costs two small reads. Throws ENOENT for a missing file.
 */
export async function readLineFileEnds(path: string): Promise<LineFileEnds> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size === 0) return { size, wholeLength: 0 };
    const headLength = Math.min(size, MAX_SEAL_LINE + 1);
    const head = Buffer.alloc(headLength);
    await handle.read(head, 0, headLength, 0);
    const firstNl = head.indexOf(0x0a);
    const first = firstNl < 0 ? undefined : head.subarray(0, firstNl).toString('utf8');
    const tailLength = Math.min(size, 2 * (MAX_SEAL_LINE + 1));
    const tail = Buffer.alloc(tailLength);
    await handle.read(tail, 0, tailLength, size - tailLength);
    const lastNl = tail.lastIndexOf(0x0a);
    if (lastNl < 0) return { size, wholeLength: 0, ...(first === undefined ? {} : { first }) };
    const wholeLength = size - tailLength + lastNl + 1;
    // (lastIndexOf with a negative offset would count from the end.)
    const prevNl = lastNl === 0 ? -1 : tail.lastIndexOf(0x0a, lastNl - 1);
    const last = tail.subarray(prevNl + 1, lastNl).toString('utf8');
    return { size, wholeLength, last, ...(first === undefined ? {} : { first }) };
  } finally {
    await handle.close();
  }
}
