import { describe, expect, it } from 'vitest';
import { charsetOf, decodeBodyText, detectJsonEncoding, isJsonContentType, parseJsonBody } from '../../server/codec/json-text.js';
import { utf16be, utf32 } from '../helpers/text-encodings.js';

const doc = { model: 'gpt-5', max_tokens: 100000, messages: [{ role: 'user', content: 'héllo 😀' }] };
const text = JSON.stringify(doc);

const BOM = {
  utf8: Buffer.from([0xef, 0xbb, 0xbf]),
  utf16le: Buffer.from([0xff, 0xfe]),
  utf16be: Buffer.from([0xfe, 0xff]),
  utf32le: Buffer.from([0xff, 0xfe, 0, 0]),
  utf32be: Buffer.from([0, 0, 0xfe, 0xff]),
};

describe('reading JSON bodies as upstream parsers do', () => {
  // What Python's json.loads(bytes) reads without any Content-Type.
  const encoded: Array<[string, Buffer, string]> = [
    ['UTF-8', Buffer.from(text), 'utf-8'],
    ['UTF-8 with BOM', Buffer.concat([BOM.utf8, Buffer.from(text)]), 'utf-8'],
    ['UTF-16LE', Buffer.from(text, 'utf16le'), 'utf-16le'],
    ['UTF-16LE with BOM', Buffer.concat([BOM.utf16le, Buffer.from(text, 'utf16le')]), 'utf-16le'],
    ['UTF-16BE', utf16be(text), 'utf-16be'],
    ['UTF-16BE with BOM', Buffer.concat([BOM.utf16be, utf16be(text)]), 'utf-16be'],
    ['UTF-32LE', utf32(text, true), 'utf-32le'],
    ['UTF-32LE with BOM', Buffer.concat([BOM.utf32le, utf32(text, true)]), 'utf-32le'],
    ['UTF-32BE', utf32(text, false), 'utf-32be'],
    ['UTF-32BE with BOM', Buffer.concat([BOM.utf32be, utf32(text, false)]), 'utf-32be'],
  ];

  it.each(encoded)('detects and reads %s from its first bytes (RFC 4627 section 3)', (_, bytes, encoding) => {
    expect(detectJsonEncoding(bytes)).toBe(encoding);
    expect(parseJsonBody(bytes)).toEqual({ kind: 'json', value: doc, encoding });
    expect(parseJsonBody(bytes, 'application/json')).toEqual({ kind: 'json', value: doc, encoding });
    expect(decodeBodyText(bytes)).toEqual({ text, encoding });
  });

  it('detects two-byte UTF-16 documents and leaves short UTF-8 alone', () => {
    expect(detectJsonEncoding(Buffer.from('1', 'utf16le'))).toBe('utf-16le');
    expect(detectJsonEncoding(utf16be('1'))).toBe('utf-16be');
    expect(detectJsonEncoding(Buffer.from('1'))).toBe('utf-8');
    expect(parseJsonBody(Buffer.from('7', 'utf16le'))).toEqual({ kind: 'json', value: 7, encoding: 'utf-16le' });
  });

  it('honours the charset of the Content-Type (utf-16/32 in either order, the latin-1 family, ascii)', () => {
    expect(parseJsonBody(Buffer.from(text, 'utf16le'), 'application/json; charset=utf-16le')).toMatchObject({ kind: 'json', value: doc });
    expect(parseJsonBody(utf16be(text), 'application/json; charset="UTF-16"')).toMatchObject({ kind: 'json', value: doc, encoding: 'utf-16be' });
    expect(parseJsonBody(utf32(text, true), 'application/json;charset=utf-32le')).toMatchObject({ kind: 'json', value: doc, encoding: 'utf-32le' });
    const latin = Buffer.from('{"model":"caf\u00e9","max_tokens":5}', 'latin1');
    expect(parseJsonBody(latin, 'application/json; charset=ISO-8859-1')).toEqual({ kind: 'json', value: { model: 'café', max_tokens: 5 }, encoding: 'iso-8859-1' });
    expect(decodeBodyText(latin, 'text/plain; charset=latin1')).toEqual({ text: '{"model":"café","max_tokens":5}', encoding: 'iso-8859-1' });
    expect(decodeBodyText(Buffer.from([0x80]), 'text/plain; charset=windows-1252')).toEqual({ text: '€', encoding: 'windows-1252' });
    expect(decodeBodyText(Buffer.from([0x80]), 'text/plain; charset=us-ascii')).toMatchObject({ error: expect.stringContaining('not valid us-ascii') });
  });

  it('refuses what it cannot read for sure: unknown charsets, two charsets, readings that disagree', () => {
    expect(parseJsonBody(Buffer.from('{"a":1}'), 'application/json; charset=shift_jis')).toEqual({ kind: 'unreadable', reason: 'charset "shift_jis" is not supported' });
    expect(parseJsonBody(Buffer.from('{"a":1}'), 'application/json; charset=utf-8; charset=utf-16le')).toMatchObject({ kind: 'unreadable' });
    // Valid UTF-8 labelled latin-1: Python reads "é", a charset-honouring parser reads "Ã©". Which will the upstream act on?
    expect(parseJsonBody(Buffer.from('{"model":"café"}'), 'application/json; charset=iso-8859-1')).toEqual({
      kind: 'unreadable',
      reason: 'the body reads as different JSON documents in iso-8859-1 and utf-8, so which one the upstream sees is unknown',
    });
    // ASCII reads the same in both: no ambiguity.
    expect(parseJsonBody(Buffer.from('{"model":"gpt-5"}'), 'application/json; charset=iso-8859-1')).toMatchObject({ kind: 'json', value: { model: 'gpt-5' } });
    // A label that does not fit the bytes: the reading that parses wins (Python ignores the label).
    expect(parseJsonBody(Buffer.from(text, 'utf16le'), 'application/json; charset=utf-8')).toEqual({ kind: 'json', value: doc, encoding: 'utf-16le' });
  });

  it('keeps the last of duplicate keys, as Python, Go and JSON.parse do', () => {
    expect(parseJsonBody(Buffer.from('{"max_tokens":1,"max_tokens":100000}'))).toMatchObject({ value: { max_tokens: 100000 } });
  });

  it('tells JSON that does not parse from bodies that are not JSON at all', () => {
    // Labelled JSON, or shaped like it (even under another label), yet not one document: unreadable.
    expect(parseJsonBody(Buffer.from('{"max_tokens": NaN}'), 'application/json')).toEqual({ kind: 'unreadable', reason: expect.stringMatching(/^the body cannot be read as JSON \(as utf-8: not valid JSON/) });
    expect(parseJsonBody(Buffer.from('  {"model": "gpt-5",}'), 'text/plain')).toMatchObject({ kind: 'unreadable' });
    expect(parseJsonBody(Buffer.from('[1, 2'), undefined)).toMatchObject({ kind: 'unreadable' });
    expect(parseJsonBody(Buffer.from('model=gpt-5'), 'application/vnd.api+json')).toMatchObject({ kind: 'unreadable' });
    // The body's own text is never echoed in the reason: it may be personal data.
    expect(JSON.stringify(parseJsonBody(Buffer.from('{"ssn": "123-45-6789" oops}'), 'application/json'))).not.toContain('123-45');
    // Neither labelled nor shaped as JSON: not JSON, which is no problem.
    expect(parseJsonBody(Buffer.from('model=gpt-5&max_tokens=9'), 'application/x-www-form-urlencoded')).toEqual({ kind: 'not-json' });
    expect(parseJsonBody(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]), 'image/jpeg')).toEqual({ kind: 'not-json' });
    expect(parseJsonBody(Buffer.alloc(0), 'application/json')).toEqual({ kind: 'not-json' });
    // Bytes that are not UTF-8 are read as lenient parsers do (U+FFFD), not refused.
    expect(parseJsonBody(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]))).toEqual({ kind: 'json', value: { a: '\ufffd' }, encoding: 'utf-8' });
  });

  it('parses content types', () => {
    expect(isJsonContentType('application/json; charset=utf-8')).toBe(true);
    expect(isJsonContentType('Application/JSON')).toBe(true);
    expect(isJsonContentType('application/problem+json')).toBe(true);
    expect(isJsonContentType('text/plain')).toBe(false);
    expect(isJsonContentType(undefined)).toBe(false);
    expect(charsetOf('text/plain; format=flowed; Charset="UTF-8"')).toBe('utf-8');
    expect(charsetOf('application/json')).toBeUndefined();
  });
});
