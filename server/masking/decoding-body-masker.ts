import { SluiceError } from '../../shared/errors.js';
import { charsetOf, decodeBodyText, detectJsonEncoding, type TextEncodingName } from '../codec/json-text.js';
import { outputBytes, type BodyMasker } from './body-masker.js';
import { MASK_STEP_CHARS, sliceEnd, TurnClock } from './text-masker.js';

/**
 * A body a client reads in another encoding than UTF-8 (a `charset=utf-16le`, a BOM, UTF-16/32 that
 * Python's `json.loads(bytes)` detects from the zero bytes): masking UTF-8 rules over its raw bytes
 * would see nothing. Such a body is collected whole (up to `maxBytes`, else refused), decoded as the
 * client decodes it, masked as UTF-8, and written back in its own encoding so the headers stay true.
 * A plain UTF-8 body goes straight to the inner masker, streaming as before.
 */
export class DecodingBodyMasker implements Required<BodyMasker> {
  readonly #inner: BodyMasker;
  readonly #contentType: string | undefined;
  readonly #maxBytes: number;
  #mode: 'undecided' | 'utf-8' | 'decode' = 'undecided';
  #held: Buffer[] = [];
  #size = 0;

  constructor(inner: BodyMasker, contentType: string | undefined, maxBytes: number) {
    this.#inner = inner;
    this.#contentType = contentType;
    this.#maxBytes = maxBytes;
    const charset = charsetOf(contentType);
    if (typeof charset === 'object') throw blocked(charset.error);
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') this.#mode = 'decode';
  }

  write(chunk: Buffer): string | Buffer {
    const ready = this.#take(chunk);
    return ready === null ? '' : this.#inner.write(ready);
  }

  end(): string | Buffer {
    if (this.#mode === 'decode') return this.#decodeWhole((bytes) => joined(this.#inner.write(bytes), this.#inner.end()));
    const rest = this.#release();
    return rest === null ? this.#inner.end() : joined(this.#inner.write(rest), this.#inner.end());
  }

  async writeAsync(chunk: Buffer): Promise<string | Buffer> {
    const ready = this.#take(chunk);
    if (ready === null) return '';
    return this.#inner.writeAsync ? this.#inner.writeAsync(ready) : this.#inner.write(ready);
  }

  async endAsync(): Promise<string | Buffer> {
    const inner = this.#inner;
    const write = (b: Buffer) => (inner.writeAsync ? inner.writeAsync(b) : Promise.resolve(inner.write(b)));
    const end = () => (inner.endAsync ? inner.endAsync() : Promise.resolve(inner.end()));
    if (this.#mode === 'decode') {
      const bytes = this.#whole();
      const decoded = this.#decoded(bytes);
      if (decoded === null) return bytes;
      const first = await write(decoded.utf8);
      const masked = joined(first, await end());
      if (masked.equals(decoded.utf8)) return bytes;
      return encodeAsAsync(masked.toString('utf8'), decoded.encoding, decoded.bom, new TurnClock());
    }
    const rest = this.#release();
    return rest === null ? end() : joined(await write(rest), await end());
  }

  /** Bytes the inner masker may have now; null while the encoding is undecided or the body is collected. */
  #take(chunk: Buffer): Buffer | null {
    if (this.#mode === 'utf-8') return chunk;
    this.#held.push(chunk);
    this.#size += chunk.length;
    if (this.#mode === 'decode') {
      if (this.#size > this.#maxBytes) throw blocked(`the body is not UTF-8 and exceeds max_json_body (${this.#maxBytes} bytes), so it cannot be decoded whole`);
      return null;
    }
    // Four bytes tell UTF-16/32 and a BOM apart from UTF-8 (RFC 4627 section 3).
    if (this.#size < 4) return null;
    // Most bodies arrive with their first four bytes in one chunk: no copy to look at them.
    const head = this.#held.length === 1 ? this.#held[0]! : Buffer.concat(this.#held);
    const utf8Bom = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf;
    if (utf8Bom || detectJsonEncoding(head) !== 'utf-8') {
      this.#mode = 'decode';
      this.#held = [head];
      return this.#take(Buffer.alloc(0));
    }
    return this.#release();
  }

  /** Settles on UTF-8 and hands over what was held (null when nothing was). */
  #release(): Buffer | null {
    this.#mode = 'utf-8';
    if (this.#held.length === 0) return null;
    const held = this.#held.length === 1 ? this.#held[0]! : Buffer.concat(this.#held);
    this.#held = [];
    return held.length === 0 ? null : held;
  }

  #whole(): Buffer {
    const bytes = Buffer.concat(this.#held);
    this.#held = [];
    return bytes;
  }

  #decoded(bytes: Buffer): { utf8: Buffer; encoding: TextEncodingName; bom: boolean } | null {
    if (bytes.length === 0) return null;
    const read = decodeBodyText(bytes, this.#contentType);
    if ('error' in read) throw blocked(read.error);
    const bom = bytes.length > 0 && (read.encoding === 'utf-8' ? bytes[0] === 0xef : /^utf-(16|32)/.test(read.encoding) && hasBom(bytes, read.encoding));
    return { utf8: Buffer.from(read.text, 'utf8'), encoding: read.encoding, bom };
  }

  #decodeWhole(mask: (utf8: Buffer) => Buffer): Buffer {
    const bytes = this.#whole();
    const decoded = this.#decoded(bytes);
    if (decoded === null) return bytes;
    return this.#settle(bytes, decoded, mask(decoded.utf8));
  }

  /** The original bytes when masking changed nothing, else the masked text in the body's own encoding. */
  #settle(original: Buffer, decoded: { utf8: Buffer; encoding: TextEncodingName; bom: boolean }, masked: Buffer): Buffer {
    if (masked.equals(decoded.utf8)) return original;
    return encodeAs(masked.toString('utf8'), decoded.encoding, decoded.bom);
  }
}

function hasBom(bytes: Buffer, encoding: TextEncodingName): boolean {
  const b = [...bytes.subarray(0, 4)];
  switch (encoding) {
    case 'utf-16le':
      return b[0] === 0xff && b[1] === 0xfe;
    case 'utf-16be':
      return b[0] === 0xfe && b[1] === 0xff;
    case 'utf-32le':
      return b[0] === 0xff && b[1] === 0xfe && b[2] === 0 && b[3] === 0;
    case 'utf-32be':
      return b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff;
    default:
      return false;
  }
}

/**
 * `encodeAs` with the same bytes; UTF-32, written a code point at a time here, is written a slice at a
 * time with turns of the event loop between (the other encodings are native and linear).
 */
async function encodeAsAsync(text: string, encoding: TextEncodingName, bom: boolean, clock: TurnClock): Promise<Buffer> {
  if (encoding !== 'utf-32le' && encoding !== 'utf-32be') return encodeAs(text, encoding, bom);
  const parts: Buffer[] = [encodeAs(bom ? '\ufeff' : '', encoding, false)];
  // A slice never ends between the halves of a surrogate pair, so each is whole code points.
  for (let at = 0; at < text.length; ) {
    const end = sliceEnd(text, at, MASK_STEP_CHARS * 16);
    parts.push(encodeAs(text.slice(at, end), encoding, false));
    at = end;
    await clock.pause();
  }
  return Buffer.concat(parts);
}

/** `text` in `encoding`, with its BOM when the original had one. */
export function encodeAs(text: string, encoding: TextEncodingName, bom: boolean): Buffer {
  const body = bom ? `\ufeff${text}` : text;
  switch (encoding) {
    case 'utf-8':
      return Buffer.from(body, 'utf8');
    case 'utf-16le':
      return Buffer.from(body, 'utf16le');
    case 'utf-16be':
      return Buffer.from(body, 'utf16le').swap16();
    case 'utf-32le':
    case 'utf-32be': {
      const points = [...body].map((c) => c.codePointAt(0)!);
      const out = Buffer.alloc(points.length * 4);
      points.forEach((p, i) => (encoding === 'utf-32le' ? out.writeUInt32LE(p, i * 4) : out.writeUInt32BE(p, i * 4)));
      return out;
    }
    default: {
      // One byte a character: a replacement is ASCII, but a character the charset lacks cannot be written back.
      if (/[^\u0000-\u00ff]/.test(body) || (encoding === 'us-ascii' && /[^\u0000-\u007f]/.test(body)) || (encoding === 'windows-1252' && /[\u0080-\u009f]/.test(body))) {
        throw blocked(`the masked body cannot be written back in ${encoding}`);
      }
      return Buffer.from(body, 'latin1');
    }
  }
}

function blocked(reason: string): SluiceError {
  return new SluiceError('ERR_MASKING_BLOCKED', { message: `The response cannot be masked as the client reads it: ${reason}` });
}

function joined(a: string | Buffer, b: string | Buffer): Buffer {
  return Buffer.concat([outputBytes(a), outputBytes(b)]);
}

/**
 * A body whose type says text (or nothing) but which a client may parse as JSON anyway (the OpenAI SDK
 * parses whatever it gets): once its first visible character is `{` or `[`, it is masked as JSON, so
 * escapes in its strings are decoded; otherwise as text, streaming.
 */
export class SniffingBodyMasker implements Required<BodyMasker> {
  readonly #makeJson: () => BodyMasker;
  readonly #makeText: () => BodyMasker;
  #inner: BodyMasker | null = null;
  #held: Buffer[] = [];

  constructor(makeJson: () => BodyMasker, makeText: () => BodyMasker) {
    this.#makeJson = makeJson;
    this.#makeText = makeText;
  }

  write(chunk: Buffer): string | Buffer {
    const ready = this.#take(chunk);
    return ready === null ? '' : this.#inner!.write(ready);
  }

  end(): string | Buffer {
    const rest = this.#settle();
    return rest === null ? this.#inner!.end() : joined(this.#inner!.write(rest), this.#inner!.end());
  }

  async writeAsync(chunk: Buffer): Promise<string | Buffer> {
    const ready = this.#take(chunk);
    if (ready === null) return '';
    const inner = this.#inner!;
    return inner.writeAsync ? inner.writeAsync(ready) : inner.write(ready);
  }

  async endAsync(): Promise<string | Buffer> {
    const rest = this.#settle();
    const inner = this.#inner!;
    const first = rest === null ? '' : inner.writeAsync ? await inner.writeAsync(rest) : inner.write(rest);
    return joined(first, inner.endAsync ? await inner.endAsync() : inner.end());
  }

  #take(chunk: Buffer): Buffer | null {
    if (this.#inner !== null) return chunk;
    this.#held.push(chunk);
    const held = Buffer.concat(this.#held);
    this.#held = [held];
    // Whitespace, a BOM's bytes and UTF-16/32 zero bytes say nothing yet.
    const first = held.findIndex((b) => b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0 && b !== 0xef && b !== 0xbb && b !== 0xbf && b !== 0xff && b !== 0xfe);
    if (first === -1) return null;
    this.#inner = held[first] === 0x7b || held[first] === 0x5b ? this.#makeJson() : this.#makeText();
    this.#held = [];
    return held;
  }

  /** Decides (as text when the body never showed a visible character) and returns what was held. */
  #settle(): Buffer | null {
    if (this.#inner === null) this.#inner = this.#makeText();
    const held = this.#held.length === 0 ? null : Buffer.concat(this.#held);
    this.#held = [];
    return held;
  }
}
