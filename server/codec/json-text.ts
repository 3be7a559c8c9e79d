import { isDeepStrictEqual } from 'node:util';

/**
 * Reading JSON bodies the way the parsers behind an upstream do, so that what sluice judges (policy) or
 * rewrites (masking) is the document the upstream will see. JSON travels in UTF-8, but real parsers
 * accept more: Python's `json.loads(bytes)` (what Starlette's `request.json()` uses) detects UTF-16 and
 * UTF-32 from the first four bytes (RFC 4627 section 3) and skips a UTF-8 BOM; many others honour the
 * `charset=` of the Content-Type. A reader that only knows UTF-8 would see `null` where the upstream
 * sees `{"model": "gpt-5"}`.
 */

/** The encodings this module reads. */
export type TextEncodingName = 'utf-8' | 'utf-16le' | 'utf-16be' | 'utf-32le' | 'utf-32be' | 'iso-8859-1' | 'windows-1252' | 'us-ascii';

/** Text decoded from a body, or why it could not be. */
export type DecodedText = { readonly text: string; readonly encoding: TextEncodingName } | { readonly error: string };

/** Options of {@link decodeBodyText}. */
export interface DecodeOptions {
  /**
   * Bytes that are not valid UTF-8 where UTF-8 applies: `error` (default) refuses them; `replace` reads
   * them as U+FFFD, as Node's and Go's JSON readers do.
   */
  readonly invalidUtf8?: 'error' | 'replace';
}

/** What a body is, read as JSON. */
export type JsonBody =
  /** The parsed document and the encoding it was read in. */
  | { readonly kind: 'json'; readonly value: unknown; readonly encoding: TextEncodingName }
  /** Empty, or neither labelled nor shaped as JSON (form data, audio, plain text). */
  | { readonly kind: 'not-json' }
  /** Labelled or shaped as JSON (or in a charset this module does not know) but not readable as one document. */
  | { readonly kind: 'unreadable'; readonly reason: string };

/** Charset labels (lower case) and what they name; aliases as registered with IANA and used by Python. */
const CHARSETS: Readonly<Record<string, TextEncodingName | 'utf-16' | 'utf-32'>> = {
  'utf-8': 'utf-8',
  utf8: 'utf-8',
  'unicode-1-1-utf-8': 'utf-8',
  'utf-16': 'utf-16',
  utf16: 'utf-16',
  'utf-16le': 'utf-16le',
  'utf-16be': 'utf-16be',
  'utf-32': 'utf-32',
  utf32: 'utf-32',
  'utf-32le': 'utf-32le',
  'utf-32be': 'utf-32be',
  'iso-8859-1': 'iso-8859-1',
  iso_8859_1: 'iso-8859-1',
  'iso_8859-1': 'iso-8859-1',
  'iso8859-1': 'iso-8859-1',
  'iso-ir-100': 'iso-8859-1',
  latin1: 'iso-8859-1',
  'latin-1': 'iso-8859-1',
  l1: 'iso-8859-1',
  cp819: 'iso-8859-1',
  ibm819: 'iso-8859-1',
  'windows-1252': 'windows-1252',
  cp1252: 'windows-1252',
  'x-cp1252': 'windows-1252',
  'us-ascii': 'us-ascii',
  ascii: 'us-ascii',
  'ansi_x3.4-1968': 'us-ascii',
  iso646: 'us-ascii',
  'iso646-us': 'us-ascii',
};

/** The media type (lower case, no parameters) of a Content-Type value; '' when there is none. */
export function mediaTypeOf(contentType: string | undefined): string {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
}

/** Whether a Content-Type labels JSON: `application/json`, `text/json` or any `…/…+json`. */
export function isJsonContentType(contentType: string | undefined): boolean {
  const type = mediaTypeOf(contentType);
  return type === 'application/json' || type === 'text/json' || /^[a-z0-9!#$&^_.-]+\/[a-z0-9!#$&^_.+-]+\+json$/.test(type);
}

/**
 * The `charset` parameter of a Content-Type: undefined when absent, `{ error }` when it is given twice
 * with different values (no reader can know which one the upstream takes).
 */
export function charsetOf(contentType: string | undefined): string | undefined | { error: string } {
  if (contentType === undefined) return undefined;
  let found: string | undefined;
  for (const param of contentType.split(';').slice(1)) {
    const eq = param.indexOf('=');
    if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    let value = param.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    value = value.toLowerCase();
    if (found !== undefined && found !== value) return { error: `the Content-Type names two charsets ("${found}" and "${value}")` };
    found = value;
  }
  return found;
}

/**
 * The encoding of a JSON text from its first bytes, as RFC 4627 section 3 describes and Python's
 * `json.detect_encoding` implements: a UTF-32, UTF-16 or UTF-8 BOM; else the pattern of zero bytes
 * (JSON starts with two ASCII characters); else UTF-8.
 */
export function detectJsonEncoding(bytes: Uint8Array): 'utf-8' | 'utf-16le' | 'utf-16be' | 'utf-32le' | 'utf-32be' {
  const [b0, b1, b2, b3] = bytes;
  // UTF-32 first: its little-endian BOM begins with UTF-16's.
  if (b0 === 0x00 && b1 === 0x00 && b2 === 0xfe && b3 === 0xff) return 'utf-32be';
  if (b0 === 0xff && b1 === 0xfe && b2 === 0x00 && b3 === 0x00) return 'utf-32le';
  if (b0 === 0xfe && b1 === 0xff) return 'utf-16be';
  if (b0 === 0xff && b1 === 0xfe) return 'utf-16le';
  if (bytes.length >= 4) {
    if (b0 === 0) return b1 !== 0 ? 'utf-16be' : 'utf-32be';
    if (b1 === 0) return b2 !== 0 || b3 !== 0 ? 'utf-16le' : 'utf-32le';
  } else if (bytes.length === 2) {
    if (b0 === 0) return 'utf-16be';
    if (b1 === 0) return 'utf-16le';
  }
  return 'utf-8';
}

function decodeUtf32(bytes: Uint8Array, littleEndian: boolean): string {
  if (bytes.length % 4 !== 0) throw new Error(`${bytes.length} bytes is not a whole number of UTF-32 code units`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let start = 0;
  if (bytes.length >= 4 && view.getUint32(0, littleEndian) === 0xfeff) start = 4;
  const parts: string[] = [];
  // In slices: String.fromCodePoint with a huge argument list would overflow the stack.
  for (let i = start; i < bytes.length; i += 4 * 4096) {
    const points: number[] = [];
    for (let j = i; j < Math.min(bytes.length, i + 4 * 4096); j += 4) {
      const cp = view.getUint32(j, littleEndian);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new Error(`U+${cp.toString(16).toUpperCase()} at byte ${j} is not a Unicode scalar value`);
      points.push(cp);
    }
    parts.push(String.fromCodePoint(...points));
  }
  return parts.join('');
}

/**
 * 0x80-0x9f of windows-1252 (the rest is latin-1); the five bytes it leaves undefined stay C1 controls,
 * as WHATWG decodes them. Written out because Node's TextDecoder reads this label as latin-1.
 */
const WINDOWS_1252_HIGH = [
  0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f,
  0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
];

function decodeWindows1252(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    const codes = Array.from(bytes.subarray(i, i + 8192), (b) => (b >= 0x80 && b < 0xa0 ? WINDOWS_1252_HIGH[b - 0x80]! : b));
    out += String.fromCharCode(...codes);
  }
  return out;
}

/** Decodes `bytes` as `encoding`; throws when they are not valid in it. A leading BOM of the encoding is dropped. */
function decodeAs(bytes: Uint8Array, encoding: TextEncodingName, invalidUtf8: 'error' | 'replace'): string {
  switch (encoding) {
    case 'utf-8':
      return new TextDecoder('utf-8', { fatal: invalidUtf8 === 'error' }).decode(bytes);
    case 'utf-16le':
    case 'utf-16be':
      return new TextDecoder(encoding, { fatal: true }).decode(bytes);
    case 'utf-32le':
    case 'utf-32be':
      return decodeUtf32(bytes, encoding === 'utf-32le');
    case 'iso-8859-1':
      // Every byte is its code point (Python's latin-1); WHATWG's "iso-8859-1" label would mean windows-1252.
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    case 'windows-1252':
      return decodeWindows1252(bytes);
    case 'us-ascii': {
      const at = bytes.findIndex((b) => b > 0x7f);
      if (at !== -1) throw new Error(`byte 0x${bytes[at]!.toString(16)} at ${at} is not ASCII`);
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    }
  }
}

/** `utf-16`/`utf-32` without an order: the BOM says, else big-endian (RFC 2781 section 4.3). */
function orderOf(label: 'utf-16' | 'utf-32', bytes: Uint8Array): TextEncodingName {
  const detected = detectJsonEncoding(bytes);
  if (label === 'utf-16') return bytes[0] === 0xff && bytes[1] === 0xfe && detected !== 'utf-32le' ? 'utf-16le' : 'utf-16be';
  return bytes[0] === 0xff && bytes[1] === 0xfe && bytes[2] === 0 && bytes[3] === 0 ? 'utf-32le' : 'utf-32be';
}

function declaredEncoding(bytes: Uint8Array, contentType: string | undefined): TextEncodingName | undefined | { error: string } {
  const charset = charsetOf(contentType);
  if (charset === undefined || typeof charset === 'object') return charset;
  const known = CHARSETS[charset];
  if (known === undefined) return { error: `charset "${charset}" is not supported` };
  return known === 'utf-16' || known === 'utf-32' ? orderOf(known, bytes) : known;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The text of a body: in the Content-Type's `charset` when it has one (an unknown charset is an error),
 * else in the encoding its first bytes show (a BOM, or UTF-16/UTF-32 zero-byte patterns), else UTF-8.
 * A BOM is never part of the text.
 */
export function decodeBodyText(bytes: Uint8Array, contentType?: string, options: DecodeOptions = {}): DecodedText {
  const invalidUtf8 = options.invalidUtf8 ?? 'error';
  const declared = declaredEncoding(bytes, contentType);
  if (typeof declared === 'object') return { error: declared.error };
  const encoding = declared ?? detectJsonEncoding(bytes);
  try {
    return { text: decodeAs(bytes, encoding, invalidUtf8), encoding };
  } catch (err) {
    return { error: `the body is not valid ${encoding}: ${messageOf(err)}` };
  }
}

/** A reading of the body: the text in one encoding, if the bytes are valid in it. */
interface Reading {
  readonly encoding: TextEncodingName;
  readonly text?: string;
  readonly error?: string;
}

function read(bytes: Uint8Array, encoding: TextEncodingName, invalidUtf8: 'error' | 'replace'): Reading {
  try {
    return { encoding, text: decodeAs(bytes, encoding, invalidUtf8) };
  } catch (err) {
    return { encoding, error: `not valid ${encoding}: ${messageOf(err)}` };
  }
}

/** Where JSON.parse stopped, without the excerpt of the body V8 puts in its message (it may be personal data). */
function syntaxProblem(err: unknown): string {
  const at = /at position (\d+)/.exec(messageOf(err))?.[1];
  return at === undefined ? 'not valid JSON' : `not valid JSON at character ${at}`;
}

function looksLikeJson(text: string): boolean {
  const first = /^[\s\ufeff]*(.)/u.exec(text)?.[1];
  return first === '{' || first === '[';
}

/**
 * Reads a body as one JSON document the way the upstream may: in the declared `charset` and in the
 * encoding its bytes show (Python ignores the charset; others honour it). When both readings parse they
 * must agree, or the body is `unreadable`: a reader cannot know which document the upstream will act on.
 * Duplicate keys keep the last value, as JSON.parse, Python and Go do.
 */
export function parseJsonBody(bytes: Uint8Array, contentType?: string): JsonBody {
  if (bytes.length === 0) return { kind: 'not-json' };
  const labelled = isJsonContentType(contentType);
  const declared = declaredEncoding(bytes, contentType);
  // A charset sluice cannot read might still carry JSON to an upstream that can: never call it "not JSON".
  if (typeof declared === 'object') return { kind: 'unreadable', reason: declared.error };

  const readings: Reading[] = [];
  if (declared !== undefined) readings.push(read(bytes, declared, 'error'));
  const detected = detectJsonEncoding(bytes);
  if (detected !== declared) readings.push(read(bytes, detected, 'error'));
  // Bytes that are not valid UTF-8 are read as lenient parsers (Node, Go) read them, unless some reading takes them as they are.
  if (readings.every((r) => r.text === undefined) && detected === 'utf-8') readings.push(read(bytes, 'utf-8', 'replace'));

  const parsed: { encoding: TextEncodingName; value: unknown }[] = [];
  const failures: string[] = [];
  let shaped = false;
  readings.forEach((r, i) => {
    if (r.text === undefined) {
      failures.push(r.error!);
      return;
    }
    shaped ||= looksLikeJson(r.text);
    if (readings.slice(0, i).some((o) => o.text === r.text)) return;
    try {
      // JSON.parse rejects a BOM, which the decoders have already dropped.
      parsed.push({ encoding: r.encoding, value: JSON.parse(r.text) as unknown });
    } catch (err) {
      failures.push(`as ${r.encoding}: ${syntaxProblem(err)}`);
    }
  });
  if (parsed.length === 0) {
    if (!labelled && !shaped) return { kind: 'not-json' };
    return { kind: 'unreadable', reason: `the body cannot be read as JSON (${failures.join('; ')})` };
  }
  const [first, ...others] = parsed;
  if (others.some((o) => !isDeepStrictEqual(o.value, first!.value))) {
    return {
      kind: 'unreadable',
      reason: `the body reads as different JSON documents in ${parsed.map((p) => p.encoding).join(' and ')}, so which one the upstream sees is unknown`,
    };
  }
  return { kind: 'json', value: first!.value, encoding: first!.encoding };
}
