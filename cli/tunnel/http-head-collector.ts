import { HeadError } from './http-head.js';

const CR = 0x0d;
const LF = 0x0a;

/**
 * Collects one HTTP message head, up to and including its blank line, from chunks as they arrive. Bounded:
 * a head longer than `maxBytes` is refused, so a client that never finishes one holds at most that much.
 * A head that arrives whole in one chunk is returned as a view of it, without copying.
 */
export class HeadCollector {
  private buf?: Buffer;
  private size = 0;

  constructor(private readonly maxBytes: number) {}

  /**
   * Take bytes of `chunk` from `offset`: how many were taken and, once the blank line arrived, the whole
   * head. Empty lines before a head are skipped (RFC 9112 2.2: a client may send one after a body).
   */
  take(chunk: Buffer, offset: number): { used: number; head?: Buffer } {
    let start = offset;
    if (this.size === 0) {
      while (start < chunk.length && (chunk[start] === CR || chunk[start] === LF)) start++;
      if (start === chunk.length) return { used: start - offset };
      const end = chunk.indexOf('\r\n\r\n', start, 'latin1');
      if (end !== -1 && end + 4 - start <= this.maxBytes) return { used: end + 4 - offset, head: chunk.subarray(start, end + 4) };
      if (end !== -1 || chunk.length - start > this.maxBytes) throw this.tooLarge();
      this.buf ??= Buffer.allocUnsafe(this.maxBytes);
      chunk.copy(this.buf, 0, start);
      this.size = chunk.length - start;
      return { used: chunk.length - offset };
    }
    const buf = this.buf!;
    // The blank line may straddle chunks: search from three bytes before the new ones.
    const from = Math.max(0, this.size - 3);
    const room = this.maxBytes - this.size;
    const n = Math.min(chunk.length - offset, room);
    chunk.copy(buf, this.size, offset, offset + n);
    const before = this.size;
    this.size += n;
    const end = buf.subarray(0, this.size).indexOf('\r\n\r\n', from, 'latin1');
    if (end !== -1) {
      const head = Buffer.from(buf.subarray(0, end + 4));
      this.size = 0;
      return { used: end + 4 - before, head };
    }
    if (this.size === this.maxBytes) throw this.tooLarge();
    return { used: n };
  }

  private tooLarge(): HeadError {
    return new HeadError(431, `the request head is larger than ${this.maxBytes} bytes`);
  }
}
