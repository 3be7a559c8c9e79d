import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BodyFramer, FramingError } from '../../cli/tunnel/http-body-framer.js';
import { HeadError, parseRequestHead, requestBodyLength, serializeRequestHead } from '../../cli/tunnel/http-head.js';
import { fuzz, fuzzSettings } from './fuzz-settings.js';

/** Header lines that smuggling lives on, valid ones and the shapes a lenient parser reads two ways. */
const headerLine = fc.oneof(
  fc.constantFrom(
    'Host: llm',
    'Content-Type: application/json',
    'Transfer-Encoding: chunked',
    'Transfer-Encoding: gzip, chunked',
    'Transfer-Encoding: chunked, gzip',
    'Transfer-Encoding: identity',
    'Transfer-Encoding:chunked',
    'Transfer-Encoding : chunked',
    'Transfer-Encoding: xchunked',
    'Transfer-Encoding:\tchunked',
    'transfer-encoding: CHUNKED',
    'Transfer-Encoding:',
    ' chunked',
    '\tTransfer-Encoding: chunked',
    'X-A: 1\n Transfer-Encoding: chunked',
    'X-B: a\rb',
    'Content-Length: 0',
    'Content-Length: 5, 5',
    'Content-Length: 5, 6',
    'Content-Length: -1',
    'Content-Length: +5',
    'Content-Length: 0x10',
    'Content-Length: 99999999999999999999',
    'Content-Length:',
    'Content-Length: 1 2',
  ),
  fc.integer({ min: 0, max: 1_000_000_000_000_000 }).map((n) => `Content-Length: ${n}`),
  fc.tuple(fc.constantFrom('X-Note', 'Accept', 'Content-Length', 'Transfer-Encoding'), fc.string({ unit: 'binary-ascii', maxLength: 12 })).map(([n, v]) => `${n}: ${v}`),
);

const requestLine = fc.constantFrom('POST /v1/chat/completions HTTP/1.1', 'GET / HTTP/1.0', 'POST /x HTTP/2.0', 'POST  /x HTTP/1.1', 'GET /a b HTTP/1.1', 'PUT /x HTTP/1.1');
const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r');

const head = fc.tuple(requestLine, fc.array(fc.tuple(headerLine, eol), { maxLength: 6 })).map(([line, headers]) => Buffer.from(`${line}\r\n${headers.map(([h, e]) => h + e).join('')}\r\n`, 'latin1'));

/** A chunked body in canonical and odd-but-valid shapes (extensions, trailers, upper-case hex, leading zeros). */
const chunkedBody = fc
  .tuple(
    fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.constantFrom('', ';x=1', ' ;a', ';q="v"'), fc.constantFrom('x', 'X', '0x')), { maxLength: 5 }),
    fc.constantFrom('', 'x-trailer: yes\r\n', 'a: 1\r\nb: 2\r\n'),
  )
  .map(([chunks, trailer]) => {
    const parts = chunks.map(([data, ext, style]) => {
      const hex = data.length.toString(16);
      const size = style === 'X' ? hex.toUpperCase() : style === '0x' ? `00${hex}` : hex;
      return Buffer.concat([Buffer.from(`${size}${ext}\r\n`), Buffer.from(data), Buffer.from('\r\n')]);
    });
    return Buffer.concat([...parts, Buffer.from(`0\r\n${trailer}\r\n`)]);
  });

const next = Buffer.from('GET /next HTTP/1.1\r\nHost: llm\r\n\r\n');

/** Feeds `bytes` in the pieces `cuts` makes; how many bytes the body took, or the error. */
function frame(framer: BodyFramer, bytes: Buffer, cuts: number[]): number {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  let taken = 0;
  for (const end of [...points, bytes.length]) {
    if (end <= at) continue;
    const piece = bytes.subarray(at, end);
    const n = framer.take(piece, 0);
    taken += n;
    if (framer.done || n < piece.length) break;
    at = end;
  }
  return taken;
}

/** A strict reading of RFC 9112 7.1 chunked framing, independent of the framer: the length of the body, or null. */
function chunkedLength(bytes: Buffer): number | null {
  const text = bytes.toString('latin1');
  let at = 0;
  for (;;) {
    const line = /^([0-9A-Fa-f]{1,13})([;\t ][^\r\n\0]*)?\r\n/.exec(text.slice(at, at + 4200));
    if (!line) return null;
    const size = parseInt(line[1]!, 16);
    at += line[0].length;
    if (size === 0) break;
    if (text.length < at + size + 2 || text.slice(at + size, at + size + 2) !== '\r\n') return null;
    at += size + 2;
  }
  for (;;) {
    if (text.startsWith('\r\n', at)) return at + 2;
    const field = /^[^\r\n]*\r\n/.exec(text.slice(at));
    if (!field) return null;
    at += field[0].length;
  }
}

describe('HTTP/1.1 heads and bodies on the local port (fuzz)', () => {
  it('refuses a head with the documented status or reads it with exactly one framing', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'http-head: smuggling shapes',
      fc.property(head, (bytes) => {
        let length;
        try {
          const parsed = parseRequestHead(bytes);
          length = requestBodyLength(parsed);
          // What is sent on is what was read: parsing the re-sent head gives the same framing.
          expect(requestBodyLength(parseRequestHead(serializeRequestHead(parsed, new Set())))).toEqual(length);
          const text = bytes.toString('latin1');
          const te = /\r\ntransfer-encoding:/i.test(text);
          const cl = /\r\ncontent-length:/i.test(text);
          // Never both, and the one kept is the one the head names.
          expect(te && cl).toBe(false);
          if (length.kind === 'chunked') expect(te).toBe(true);
          if (length.kind === 'length') expect(cl).toBe(true);
          expect(length.kind).not.toBe('until-close');
        } catch (err) {
          if (!(err instanceof HeadError)) throw err;
          expect([400, 505]).toContain(err.status);
          return;
        }
        // Nothing a lenient parser might read another way got through.
        const text = bytes.toString('latin1').slice(0, -4);
        expect(text).not.toMatch(/(^|[^\r])\n|\r(?!\n)/);
        expect(text).not.toMatch(/\r\n[ \t]/);
        if (length.kind === 'length') expect(Number.isSafeInteger(length.bytes)).toBe(true);
      }),
    );
  });

  it('frames a chunked body to its last byte however it is cut, leaving the next message whole', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'http-body-framer: valid chunked bodies',
      fc.property(chunkedBody, fc.array(fc.nat(), { maxLength: 8 }), (body, cuts) => {
        const framer = new BodyFramer({ kind: 'chunked' });
        const taken = frame(framer, Buffer.concat([body, next]), cuts);
        expect(framer.done).toBe(true);
        expect(taken).toBe(body.length);
      }),
    );
  });

  it('on any bytes, refuses with FramingError or stops exactly where a strict reading ends the body', { timeout: fuzzSettings().timeoutMs }, async () => {
    const noise = fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
      fc.array(fc.constantFrom('0', '5', 'a', 'F', 'fffffffffffffff', ';', ' ', '\r', '\n', '\r\n', 'hello', 'x: y', '\0', '-1', '0x5'), { maxLength: 16 }).map((p) => Buffer.from(p.join(''), 'latin1')),
      chunkedBody.chain((b) => fc.nat({ max: b.length }).map((i) => Buffer.concat([b.subarray(0, i), Buffer.from([b[i] === undefined ? 0 : b[i]! ^ 0x20]), b.subarray(i + 1)]))),
    );
    await fuzz(
      'http-body-framer: any bytes',
      fc.property(noise, fc.array(fc.nat(), { maxLength: 4 }), (bytes, cuts) => {
        const input = Buffer.concat([bytes, next]);
        const framer = new BodyFramer({ kind: 'chunked' });
        let taken: number;
        try {
          taken = frame(framer, input, cuts);
        } catch (err) {
          expect(err).toBeInstanceOf(FramingError);
          return;
        }
        const strict = chunkedLength(input);
        if (framer.done) expect(taken).toBe(strict);
        else expect(taken).toBe(input.length);
      }),
    );
  });

  it('takes exactly Content-Length bytes whatever the cuts', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'http-body-framer: content-length',
      fc.property(fc.integer({ min: 1, max: 300 }), fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 6 }), (n, extra, cuts) => {
        const framer = new BodyFramer({ kind: 'length', bytes: n });
        const input = Buffer.concat([Buffer.alloc(n, 0x61), Buffer.from(extra)]);
        expect(frame(framer, input, cuts)).toBe(n);
        expect(framer.done).toBe(true);
      }),
    );
  });
});
