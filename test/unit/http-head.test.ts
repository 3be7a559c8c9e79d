import { describe, expect, it } from 'vitest';
import { HeadCollector } from '../../cli/tunnel/http-head-collector.js';
import { HeadError, parseRequestHead, parseResponseHead, requestBodyLength, responseBodyLength, serializeRequestHead } from '../../cli/tunnel/http-head.js';
import { carriesLocalToken, LOCAL_TOKEN_HEADERS, newLocalToken } from '../../cli/tunnel/local-token.js';

const head = (text: string) => Buffer.from(text, 'latin1');

describe('request heads on the local port', () => {
  it('keeps every header line as sent except the ones that carry the local token', () => {
    const parsed = parseRequestHead(head('POST /v1/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nX-Api-Key: t\r\nX-Cafe: caf\xe9\r\nContent-Length: 2\r\n\r\n'));
    expect(parsed.method).toBe('POST');
    expect(requestBodyLength(parsed)).toEqual({ kind: 'length', bytes: 2 });
    expect(serializeRequestHead(parsed, LOCAL_TOKEN_HEADERS).toString('latin1')).toBe('POST /v1/chat HTTP/1.1\r\nHost: x\r\nX-Cafe: caf\xe9\r\nContent-Length: 2\r\n\r\n');
  });

  it.each([
    ['a bare LF', 'GET / HTTP/1.1\nHost: x\r\n\r\n', 400],
    ['a folded header', 'GET / HTTP/1.1\r\nX-A: 1\r\n  2\r\n\r\n', 400],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : x\r\n\r\n', 400],
    ['HTTP/2', 'PRI * HTTP/2.0\r\n\r\n', 505],
    ['Transfer-Encoding with Content-Length', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n', 400],
    ['a Transfer-Encoding that does not end with chunked', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 400],
    ['conflicting Content-Length values', 'POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n', 400],
  ])('refuses %s', (_what, text, status) => {
    const parse = () => requestBodyLength(parseRequestHead(head(text)));
    expect(parse).toThrow(HeadError);
    try {
      parse();
    } catch (err) {
      expect((err as HeadError).status).toBe(status);
    }
  });

  it('knows which answers have no body', () => {
    const ok = parseResponseHead(head('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n'));
    expect(responseBodyLength(ok, 'GET')).toEqual({ kind: 'length', bytes: 5 });
    expect(responseBodyLength(ok, 'HEAD')).toEqual({ kind: 'none' });
    expect(responseBodyLength(parseResponseHead(head('HTTP/1.1 100 Continue\r\n\r\n')), 'POST')).toEqual({ kind: 'none' });
    expect(responseBodyLength(parseResponseHead(head('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')), 'GET')).toEqual({ kind: 'chunked' });
    expect(responseBodyLength(parseResponseHead(head('HTTP/1.1 200 OK\r\n\r\n')), 'GET')).toEqual({ kind: 'until-close' });
  });
});

describe('HeadCollector', () => {
  it('collects a head split at every place, skipping blank lines before it, and leaves the body', () => {
    const bytes = head('\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\nBODY');
    for (let size = 1; size <= bytes.length; size++) {
      const collector = new HeadCollector(1024);
      let got: Buffer | undefined;
      let used = 0;
      for (let i = 0; i < bytes.length && !got; i += size) {
        const piece = bytes.subarray(i, i + size);
        const r = collector.take(piece, 0);
        used += r.used;
        got = r.head;
      }
      expect(got?.toString('latin1'), `pieces of ${size}`).toBe('GET /x HTTP/1.1\r\nHost: a\r\n\r\n');
      expect(used).toBe(bytes.length - 4);
    }
  });

  it('refuses a head beyond its bound with 431, whole or in pieces', () => {
    const big = head(`GET / HTTP/1.1\r\nX: ${'a'.repeat(100)}\r\n\r\n`);
    expect(() => new HeadCollector(64).take(big, 0)).toThrow(expect.objectContaining({ status: 431 }));
    const collector = new HeadCollector(64);
    expect(() => {
      for (let i = 0; i < big.length; i += 10) collector.take(big.subarray(i, i + 10), 0);
    }).toThrow(expect.objectContaining({ status: 431 }));
  });
});

describe('the local token', () => {
  it('is 256 random bits, and is accepted as a bearer token or an X-Api-Key only when it matches exactly', () => {
    const token = newLocalToken();
    expect(token).toMatch(/^sl_local_[A-Za-z0-9_-]{43}$/);
    expect(newLocalToken()).not.toBe(token);
    const headers = (text: string) => parseRequestHead(head(`GET / HTTP/1.1\r\n${text}\r\n\r\n`)).headers;
    expect(carriesLocalToken(headers(`Authorization: Bearer ${token}`), token)).toBe(true);
    expect(carriesLocalToken(headers(`authorization: bearer ${token}`), token)).toBe(true);
    expect(carriesLocalToken(headers(`X-Api-Key: ${token}`), token)).toBe(true);
    expect(carriesLocalToken(headers(`Authorization: Bearer ${token}x`), token)).toBe(false);
    expect(carriesLocalToken(headers(`Authorization: Basic ${token}`), token)).toBe(false);
    expect(carriesLocalToken(headers(`X-Token: ${token}`), token)).toBe(false);
  });
});
