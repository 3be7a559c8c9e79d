import { describe, expect, it } from 'vitest';
import { BodyFramer, FramingError } from '../../cli/tunnel/http-body-framer.js';

/** Feed `bytes` in pieces of `size`; returns how many bytes the body took and whether it ended. */
function frame(framer: BodyFramer, bytes: Buffer, size: number): number {
  let taken = 0;
  for (let i = 0; i < bytes.length && !framer.done; i += size) {
    const piece = bytes.subarray(i, Math.min(bytes.length, i + size));
    const n = framer.take(piece, 0);
    taken += n;
    if (n < piece.length) break;
  }
  return taken;
}

describe('BodyFramer', () => {
  const chunked = Buffer.from('5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: yes\r\n\r\n');

  it('finds the end of a chunked body split at every possible place, and stops there', () => {
    const next = Buffer.from('GET / HTTP/1.1\r\n\r\n');
    const bytes = Buffer.concat([chunked, next]);
    for (const size of [1, 2, 3, 7, bytes.length]) {
      const framer = new BodyFramer({ kind: 'chunked' });
      expect(frame(framer, bytes, size), `pieces of ${size}`).toBe(chunked.length);
      expect(framer.done).toBe(true);
    }
  });

  it('takes exactly Content-Length bytes, and nothing for a body delimited by close until it ends', () => {
    const framer = new BodyFramer({ kind: 'length', bytes: 4 });
    expect(framer.take(Buffer.from('abcdefg'), 1)).toBe(4);
    expect(framer.done).toBe(true);
    const untilClose = new BodyFramer({ kind: 'until-close' });
    expect(untilClose.take(Buffer.from('abc'), 0)).toBe(3);
    expect(untilClose.done).toBe(false);
    expect(new BodyFramer({ kind: 'none' }).done).toBe(true);
  });

  it.each([
    ['no size', 'x\r\n'],
    ['bare LF after the size', '5\nhello\r\n'],
    ['no CRLF after the data', '5\r\nhelloX'],
    ['a size beyond 13 hex digits', 'fffffffffffffff\r\n'],
    ['bare LF in a trailer', '0\r\nx: y\n'],
  ])('refuses %s', (_what, text) => {
    expect(() => frame(new BodyFramer({ kind: 'chunked' }), Buffer.from(text), 1)).toThrow(FramingError);
  });
});
