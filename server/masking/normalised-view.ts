/**
 * The text masking rules read, as a reader sees it: JSON `\uXXXX` escapes decoded, NFKC applied
 * (fullwidth `４１１１` and `＠` become `4111` and `@`), invisible format characters (Unicode Cf:
 * zero-width, bidi controls, soft hyphen) removed, and common Cyrillic and Greek look-alikes of Latin
 * letters folded. Each character of the view knows the original characters it came from, so a mask
 * found in the view covers the original ones, invisible characters inside the value included.
 */
export interface NormalisedView {
  readonly text: string;
  /** For each view character, where its original characters start. */
  readonly origin: Int32Array;
  /** For each view character, where its original characters end. */
  readonly originEnd: Int32Array;
}

/** A `\u` escape: text holding one needs a view, as does text that is not all ASCII. */
const ESCAPE = /\\u[0-9a-fA-F]{4}/g;
/** The start of an escape cut by the end of a streamed fragment: held until the rest arrives. */
const CUT_ESCAPE = /\\(u[0-9a-fA-F]{0,3})?$/;

/**
 * Whether `text` reads differently in its normalised view (the fast path skips the view otherwise);
 * an unfinished text (`final` false) also when it ends inside an escape.
 */
export function needsView(text: string, final = true): boolean {
  // Only ASCII encodes as one UTF-8 byte a code unit: the native count is many times faster than a
  // regular expression stepping through the text. Escapes start with a backslash, found by indexOf.
  if (Buffer.byteLength(text, 'utf8') !== text.length) return true;
  const backslash = text.indexOf('\\');
  if (backslash === -1) return false;
  ESCAPE.lastIndex = backslash;
  return ESCAPE.test(text) || (!final && CUT_ESCAPE.test(text));
}

/** Cyrillic and Greek letters drawn like Latin ones, folded to the Latin letter. */
const HOMOGLYPHS: Readonly<Record<string, string>> = {
  а: 'a', в: 'b', е: 'e', к: 'k', м: 'm', н: 'h', о: 'o', р: 'p', с: 'c', т: 't', у: 'y', х: 'x', ѕ: 's', і: 'i', ј: 'j', ԁ: 'd', ԛ: 'q', ԝ: 'w', ɡ: 'g',
  А: 'A', В: 'B', Е: 'E', К: 'K', М: 'M', Н: 'H', О: 'O', Р: 'P', С: 'C', Т: 'T', Х: 'X', Ѕ: 'S', І: 'I', Ј: 'J', Ү: 'Y',
  α: 'a', ο: 'o', ρ: 'p', ν: 'v', ι: 'i', κ: 'k', υ: 'u', χ: 'x', ε: 'e',
  Α: 'A', Β: 'B', Ε: 'E', Ζ: 'Z', Η: 'H', Ι: 'I', Κ: 'K', Μ: 'M', Ν: 'N', Ο: 'O', Ρ: 'P', Τ: 'T', Υ: 'Y', Χ: 'X',
};

const FORMAT = /^\p{Cf}$/u;

/** What one non-ASCII character reads as ('' when invisible); remembered, since text repeats its characters. */
function readAs(char: string, cache: Map<string, string>): string {
  let read = cache.get(char);
  if (read === undefined) {
    if (FORMAT.test(char)) read = '';
    else {
      const nfkc = char.normalize('NFKC');
      read = '';
      for (const c of nfkc) read += FORMAT.test(c) ? '' : (HOMOGLYPHS[c] ?? c);
    }
    if (cache.size < 4096) cache.set(char, read);
  }
  return read;
}

const HEX4 = /^[0-9a-fA-F]{4}$/;

/** The normalised view of `text` (see NormalisedView). */
export function normalisedView(text: string): NormalisedView {
  const cache = new Map<string, string>();
  let view = '';
  const origin: number[] = [];
  const originEnd: number[] = [];
  const add = (read: string, start: number, end: number): void => {
    view += read;
    for (let k = 0; k < read.length; k++) {
      origin.push(start);
      originEnd.push(end);
    }
  };
  let i = 0;
  const n = text.length;
  while (i < n) {
    // A run of plain ASCII is copied whole.
    let j = i;
    while (j < n) {
      const c = text.charCodeAt(j);
      if (c > 0x7f || c === 0x5c) break;
      j++;
    }
    if (j > i) {
      view += text.slice(i, j);
      for (let k = i; k < j; k++) {
        origin.push(k);
        originEnd.push(k + 1);
      }
      i = j;
      if (i >= n) break;
    }
    const code = text.charCodeAt(i);
    if (code === 0x5c) {
      const hex = text.slice(i + 2, i + 6);
      if (text[i + 1] === 'u' && HEX4.test(hex)) {
        let unit = parseInt(hex, 16);
        let end = i + 6;
        let char = String.fromCharCode(unit);
        // A surrogate pair written as two escapes is one character.
        const low = text.slice(i + 8, i + 12);
        if (unit >= 0xd800 && unit <= 0xdbff && text.slice(i + 6, i + 8) === '\\u' && HEX4.test(low)) {
          unit = parseInt(low, 16);
          if (unit >= 0xdc00 && unit <= 0xdfff) {
            char += String.fromCharCode(unit);
            end = i + 12;
          }
        }
        add(char.charCodeAt(0) <= 0x7f ? char : readAs(char, cache), i, end);
        i = end;
      } else {
        add('\\', i, i + 1);
        i++;
      }
      continue;
    }
    const size = code >= 0xd800 && code <= 0xdbff && i + 1 < n ? 2 : 1;
    add(readAs(text.slice(i, i + size), cache), i, i + size);
    i += size;
  }
  return { text: view, origin: Int32Array.from(origin), originEnd: Int32Array.from(originEnd) };
}

/** The first view index whose characters start at or after `offset` of the original text. */
export function viewIndexOf(view: NormalisedView, offset: number): number {
  let lo = 0;
  let hi = view.origin.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (view.origin[mid]! < offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Where view index `at` starts in the original text (its end when `at` is the end of the view). */
export function originOf(view: NormalisedView, at: number, textLength: number): number {
  return at < view.origin.length ? view.origin[at]! : textLength;
}

/** One replaced span of a view: `[start, end)` in view characters. */
export interface ViewSpan {
  readonly start: number;
  readonly end: number;
  readonly replacement: string;
}

/**
 * The original text of `[from, to)` with every span found in the view replaced; a span covers all the
 * original characters its view characters came from (and the invisible ones between them).
 */
export function applySpans(text: string, view: NormalisedView, spans: readonly ViewSpan[], from: number, to: number): string {
  let out = '';
  let pos = from;
  for (const s of spans) {
    const start = Math.max(pos, view.origin[s.start]!);
    const end = Math.min(to, view.originEnd[s.end - 1]!);
    if (end <= start) continue;
    out += text.slice(pos, start) + s.replacement;
    pos = end;
  }
  return out + text.slice(pos, Math.max(pos, to));
}
