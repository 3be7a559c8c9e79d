import { CLEAN_MAX_LENGTH, CleanTokens, CONTROL_CHARACTER } from './clean-tokens.js';
import { labelOf, type CompiledProfile, type JsonRuleEntry } from './compiled-profile.js';
import type { MaskingCounter } from './masking-summary.js';
import { replacementFor } from './replacement.js';
import { MASK_STEP_CHARS, sliceEnd, TextChannel, type TurnClock } from './text-masker.js';

/** What a token masker masks besides object keys and numbers (always masked). */
export interface JsonTokenMaskerOptions {
  /**
   * True (the default) masks string values too. False leaves them to the caller, who has already
   * masked them in the parsed document.
   */
  readonly values?: boolean;
  /** The longest string held whole; a longer one streams through a text channel (default: the profile's max_json_body). */
  readonly maxString?: number;
  /**
   * The caller knows the whole text is ASCII: a string without escapes then reads as it is, and the
   * text rules skip the look for characters a normalised view would change.
   */
  readonly ascii?: boolean;
}

/** Why a token masker stopped reading: the text is not one JSON document. */
export class InvalidJsonText extends Error {}

/**
 * The token walk of one push: it yields a token too long to mask at once (and is sent back the token
 * as written), or null every WALK_TURN_TOKENS tokens, where an asynchronous caller may give the event
 * loop a turn. One walk serves both forms, so the asynchronous output is the synchronous output.
 */
type TokenWalk<T> = Generator<LongToken | null, T, string | undefined>;

/** Tokens read between two points where an asynchronous driver looks at its clock. */
const WALK_TURN_TOKENS = 64;

/**
 * A token whose text is too long to mask in one step: the driver masks `text`, then `done` writes the
 * token. `jsonEscape`: the text is a string's raw content, which the driver may mask with JSON-escaped
 * replacements (then it tells `done` so).
 */
interface LongToken {
  readonly text: string;
  readonly jsonEscape: boolean;
  done(masked: string, escaped: boolean): string;
}

/** What a token's masking gives when the token is written exactly as received. */
const AS_RECEIVED = Symbol('as received');

/** A replacement as the content of a JSON string. */
function jsonContent(replacement: string): string {
  // Labels ("[EMAIL]", "<EMAIL:3f9a1c>", "****1234") seldom hold anything JSON escapes.
  return writtenAsIs(replacement) ? replacement : JSON.stringify(replacement).slice(1, -1);
}

/** Whether JSON.stringify writes `text` as it is between the quotes (no quote, backslash, control character or surrogate). */
function writtenAsIs(text: string): boolean {
  // Replacements are short: a look at each code unit costs less than a pattern's call.
  if (text.length > 64) return !NEEDS_ESCAPE.test(text);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return false;
  }
  return true;
}

/** What JSON.stringify writes otherwise in a string: a quote, a backslash, a control character, a lone surrogate. */
const NEEDS_ESCAPE = /["\\\x00-\x1f\ud800-\udfff]/;

const isWhitespace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isNumberChar = (c: number): boolean => (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e || c === 0x65 || c === 0x45;
const isLetter = (c: number): boolean => c >= 0x61 && c <= 0x7a;

/**
 * What may come next between tokens, as JSON's grammar has it: the walk refuses what JSON.parse refuses
 * (a missing or extra comma or colon, a key that is not a string), so a text it reads whole is one JSON
 * document and a caller needs no parse of its own to know it.
 */
const enum Next {
  /** A value: at the start, after a colon, after a comma in an array. */
  Value,
  /** A value or `]`: just after `[`. */
  ValueOrClose,
  /** A key: after a comma in an object. */
  Key,
  /** A key or `}`: just after `{`. */
  KeyOrClose,
  /** The colon after a key. */
  Colon,
  /** A comma or the container's close after a value; nothing but whitespace after the top-level value. */
  AfterValue,
}

/** The text a string literal's raw content (between its quotes) reads as. Throws InvalidJsonText. */
function decodedString(raw: string): string {
  if (!raw.includes('\\')) {
    if (CONTROL_CHARACTER.test(raw)) throw new InvalidJsonText('control character in a string');
    return raw;
  }
  try {
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    throw new InvalidJsonText('invalid string escape');
  }
}

/**
 * The keys of one open object, to tell a repeated one: most objects have a few keys, compared at once
 * (as strings of other lengths, mostly) without hashing each; a large object's go into a set.
 */
class KeysSeen {
  #few: string[] = [];
  #many: Set<string> | null = null;

  /** Adds `key`; false when the object has it already. */
  add(key: string): boolean {
    if (this.#many !== null) {
      if (this.#many.has(key)) return false;
      this.#many.add(key);
      return true;
    }
    const few = this.#few;
    for (let i = 0; i < few.length; i++) if (few[i] === key) return false;
    few.push(key);
    if (few.length > FEW_KEYS) this.#many = new Set(few);
    return true;
  }
}

const FEW_KEYS = 16;

/** Whether `token` is a JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), read without a pattern. */
function isJsonNumber(token: string): boolean {
  const n = token.length;
  let i = token.charCodeAt(0) === 0x2d ? 1 : 0;
  if (i >= n) return false;
  if (token.charCodeAt(i) === 0x30) i++;
  else if (isDigitCode(token.charCodeAt(i))) while (i < n && isDigitCode(token.charCodeAt(i))) i++;
  else return false;
  if (i < n && token.charCodeAt(i) === 0x2e) {
    const start = ++i;
    while (i < n && isDigitCode(token.charCodeAt(i))) i++;
    if (i === start) return false;
  }
  if (i < n && (token.charCodeAt(i) | 0x20) === 0x65) {
    i++;
    if (i < n && (token.charCodeAt(i) === 0x2b || token.charCodeAt(i) === 0x2d)) i++;
    const start = i;
    while (i < n && isDigitCode(token.charCodeAt(i))) i++;
    if (i === start) return false;
  }
  return i === n;
}

/**
 * Keys and integers repeat across documents (every answer of an API has the same keys): those a
 * profile's text rules leave alone are remembered with its text masker, a bounded set.
 */
const cleanTokens = new WeakMap<object, CleanTokens>();

function cleanSetOf(profile: CompiledProfile): CleanTokens {
  let set = cleanTokens.get(profile.text);
  if (set === undefined) {
    set = new CleanTokens();
    cleanTokens.set(profile.text, set);
  }
  return set;
}

/**
 * Masks JSON text token by token, as it streams, so a document too large to parse stays valid JSON:
 * structure and whitespace pass as they are; object keys, string values and numbers are masked as the
 * text a client's parser reads (escapes decoded). A masked value is written back as a JSON string; a
 * number that holds a value (its integer digits: a card, a phone number) becomes a JSON string, never
 * an unquoted label. Unchanged tokens keep their original bytes. Every value is masked, so a document
 * with duplicate keys leaks none of its candidates whichever one the client keeps.
 */
export class JsonTokenMasker {
  readonly #profile: CompiledProfile;
  readonly #counter: MaskingCounter;
  readonly #values: boolean;
  readonly #maxString: number;
  /** Unfinished token text carried to the next push: a string's raw text, a number or a literal. */
  #pending = '';
  #state: 'out' | 'string' | 'number' | 'literal' = 'out';
  /** One entry per open container: true for an object. */
  readonly #stack: boolean[] = [];
  /** Per open object, the keys seen (duplicate detection; see KeysSeen). */
  readonly #keys: KeysSeen[] = [];
  #next: Next = Next.Value;
  #stringIsKey = false;
  /** The key of the value being read, when it sits in an object. */
  #key: string | undefined;
  #sawDuplicate = false;
  /** Keys and integers the text rules left alone (only short ones are kept). */
  readonly #clean: CleanTokens;
  readonly #ascii: boolean;
  /** The string being streamed, when it grew past maxString. */
  #stream: { channel: TextChannel; replaced: boolean } | null = null;
  /** A `json_keys` rule whose value is a container, and the depth it opened at: every scalar inside is its. */
  #forced: { rule: JsonRuleEntry; depth: number } | null = null;
  /** Whether any token was written otherwise than received: false means the output is the input. */
  #changed = false;
  /** Tokens read since the walk last yielded a turn. */
  #tokens = 0;

  constructor(profile: CompiledProfile, counter: MaskingCounter, options: JsonTokenMaskerOptions = {}) {
    this.#profile = profile;
    this.#counter = counter;
    this.#values = options.values ?? true;
    this.#maxString = options.maxString ?? profile.maxJsonBody;
    this.#clean = cleanSetOf(profile);
    this.#ascii = options.ascii ?? false;
  }

  /** Whether an object repeated a key (the reading of such a document depends on the parser). */
  get sawDuplicateKey(): boolean {
    return this.#sawDuplicate;
  }

  /** Whether the output so far differs from the input: a caller can send the original bytes otherwise. */
  get changed(): boolean {
    return this.#changed;
  }

  /** Masks what can be decided of `text`; holds back an unfinished token. Throws InvalidJsonText. */
  push(text: string): string {
    return this.#drive(this.#walk(text));
  }

  /** The rest, at the end of the text. Throws InvalidJsonText when the document is unfinished. */
  end(): string {
    return this.#drive(this.#walkEnd());
  }

  /**
   * `push` with the same output, a slice of `text` at a time, a long token masked in slices, and a turn
   * of the event loop whenever `clock` says one is due, so a large document never holds the loop.
   */
  async pushAsync(text: string, clock: TurnClock): Promise<string> {
    let out = '';
    for (let at = 0; at < text.length; ) {
      // Slices bound the runs of structure and the string scans between two looks at the clock.
      const end = sliceEnd(text, at, MASK_STEP_CHARS);
      out += await this.#driveAsync(this.#walk(text.slice(at, end)), clock);
      at = end;
      await clock.pause();
    }
    return out;
  }

  /** `end`, with a long final number masked in slices. */
  async endAsync(clock: TurnClock): Promise<string> {
    return this.#driveAsync(this.#walkEnd(), clock);
  }

  #drive(walk: TokenWalk<string>): string {
    let step = walk.next();
    while (!step.done) {
      const token = step.value;
      step = walk.next(token === null ? undefined : token.done(maskToken(token.text, this.#profile, this.#counter, this.#clean, token.jsonEscape, this.#ascii), token.jsonEscape));
    }
    return step.value;
  }

  async #driveAsync(walk: TokenWalk<string>, clock: TurnClock): Promise<string> {
    let step = walk.next();
    while (!step.done) {
      if (step.value === null) {
        await clock.pause();
        step = walk.next();
      } else {
        step = walk.next(step.value.done(await maskTokenAsync(step.value.text, this.#profile, this.#counter, clock), false));
      }
    }
    return step.value;
  }

  *#walk(text: string): TokenWalk<string> {
    // Text is copied to the output in runs: a token written as received stays in the run, and only a
    // token written otherwise cuts it. `copied`: what comes before is in `out`; `tokenStart`: where the
    // token being read began in this text (-1: in an earlier one, so none of it is in this text's runs).
    let out = '';
    let copied = 0;
    let tokenStart = this.#state === 'out' ? 0 : -1;
    let i = 0;
    const n = text.length;
    while (i < n) {
      if (this.#state === 'string') {
        const close = closingQuote(text, i, this.#pending);
        if (close === -1) {
          this.#pending += text.slice(i);
          out += text.slice(copied, Math.max(tokenStart, 0));
          copied = n;
          if (this.#stream !== null || this.#pending.length > this.#maxString) out += this.#streamString(false);
          return out;
        }
        if (tokenStart >= 0 && this.#pending === '' && this.#stream === null && close - i <= CLEAN_MAX_LENGTH && this.#plainTokens) {
          // A key or value remembered as clean, read where it is: no copy of it, no hashing of it.
          const known = this.#clean.spelledAt(text, i, close);
          if (known !== undefined) {
            this.#state = 'out';
            this.#cleanString(known);
            if (this.#turnDue()) yield null;
            i = close + 1;
            continue;
          }
        }
        const raw = this.#pending + text.slice(i, close);
        this.#pending = '';
        this.#state = 'out';
        let written: string | typeof AS_RECEIVED;
        if (this.#stream !== null) {
          this.#pending = raw;
          written = this.#streamString(true);
        } else {
          const token = this.#stringToken(raw);
          written = typeof token === 'object' ? (yield token)! : token;
        }
        if (written !== AS_RECEIVED || tokenStart === -1) {
          out += text.slice(copied, Math.max(tokenStart, 0)) + (written === AS_RECEIVED ? `"${raw}"` : written);
          copied = close + 1;
        }
        if (this.#turnDue()) yield null;
        i = close + 1;
        continue;
      }
      if (this.#state === 'number' || this.#state === 'literal') {
        const test = this.#state === 'number' ? isNumberChar : isLetter;
        let j = i;
        while (j < n && test(text.charCodeAt(j))) j++;
        this.#pending += text.slice(i, j);
        if (j === n) break;
        const scalar = this.#pending;
        const token = this.#finishScalar();
        const written = typeof token === 'object' ? (yield token)! : token;
        if (written !== AS_RECEIVED || tokenStart === -1) {
          out += text.slice(copied, Math.max(tokenStart, 0)) + (written === AS_RECEIVED ? scalar : written);
          copied = j;
        }
        if (this.#turnDue()) yield null;
        i = j;
        continue;
      }
      // Between tokens: structure and whitespace stay in the run.
      let c = 0;
      for (; i < n; i++) {
        c = text.charCodeAt(i);
        if (isWhitespace(c)) continue;
        const next = this.#next;
        if (c === 0x7b || c === 0x5b) {
          const object = c === 0x7b;
          if (next !== Next.Value && next !== Next.ValueOrClose) throw unexpected(c, i);
          this.#openContainer();
          this.#stack.push(object);
          if (object) this.#keys.push(new KeysSeen());
          this.#next = object ? Next.KeyOrClose : Next.ValueOrClose;
        } else if (c === 0x7d || c === 0x5d) {
          const object = c === 0x7d;
          if (next !== Next.AfterValue && next !== (object ? Next.KeyOrClose : Next.ValueOrClose)) throw unexpected(c, i);
          const wasObject = this.#stack.pop();
          if (wasObject === undefined || wasObject !== object) throw unexpected(c, i);
          if (wasObject) this.#keys.pop();
          if (this.#forced !== null && this.#stack.length < this.#forced.depth) this.#forced = null;
          this.#next = Next.AfterValue;
        } else if (c === 0x2c) {
          if (next !== Next.AfterValue || this.#stack.length === 0) throw unexpected(c, i);
          this.#next = this.#stack[this.#stack.length - 1] === true ? Next.Key : Next.Value;
        } else if (c === 0x3a) {
          if (next !== Next.Colon) throw unexpected(c, i);
          this.#next = Next.Value;
        } else {
          break;
        }
      }
      if (i === n) break;
      tokenStart = i;
      const next = this.#next;
      const key = next === Next.Key || next === Next.KeyOrClose;
      if (!key && next !== Next.Value && next !== Next.ValueOrClose) throw unexpected(c, i);
      if (c === 0x22) {
        this.#stringIsKey = key;
        // The token's own end cannot be followed by anything else, so what it allows next is set now.
        this.#next = key ? Next.Colon : Next.AfterValue;
        this.#state = 'string';
        i++;
      } else if (key) {
        throw unexpected(c, i);
      } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
        this.#next = Next.AfterValue;
        this.#state = 'number';
      } else if (isLetter(c)) {
        this.#next = Next.AfterValue;
        this.#state = 'literal';
      } else {
        throw unexpected(c, i);
      }
    }
    // The end of this text: all of it is decided but a token still being read.
    return out + text.slice(copied, this.#state === 'out' ? n : Math.max(tokenStart, 0));
  }

  /** Counts a token read: true every WALK_TURN_TOKENS tokens, where the walk yields a turn. */
  #turnDue(): boolean {
    if (++this.#tokens < WALK_TURN_TOKENS) return false;
    this.#tokens = 0;
    return true;
  }

  *#walkEnd(): TokenWalk<string> {
    let out = '';
    if (this.#state === 'number' || this.#state === 'literal') {
      const scalar = this.#pending;
      const token = this.#finishScalar();
      const written = typeof token === 'object' ? (yield token)! : token;
      out = written === AS_RECEIVED ? scalar : written;
    }
    // Whole when the top-level value has ended: a second one was refused where it began (`Next.AfterValue`).
    if (this.#state !== 'out' || this.#stack.length > 0 || this.#next !== Next.AfterValue) throw new InvalidJsonText('unfinished JSON text');
    return out;
  }

  /** A container opens: under a `json_keys` key, each scalar in it is replaced (the parsed path replaces it whole). */
  #openContainer(): void {
    const key = this.#key;
    this.#key = undefined;
    if (this.#forced !== null || key === undefined || this.#profile.jsonKeys.size === 0) return;
    const rule = this.#profile.jsonKeys.get(key.toLowerCase());
    if (rule !== undefined) this.#forced = { rule, depth: this.#stack.length + 1 };
  }

  /**
   * Whether a string token the clean set remembers is written as received whatever it is (see
   * #cleanString): no `json_keys` rule can replace it.
   */
  get #plainTokens(): boolean {
    return this.#forced === null && this.#profile.jsonKeys.size === 0;
  }

  /**
   * `#stringToken` of a token spelled exactly as `known`, a clean token without escapes: what it does
   * then, but its masking, which leaves the token as it is.
   */
  #cleanString(known: string): void {
    if (this.#stringIsKey) {
      this.#stringIsKey = false;
      const keys = this.#keys[this.#keys.length - 1];
      if (keys !== undefined && !keys.add(known)) this.#sawDuplicate = true;
      this.#key = known;
    } else {
      // What #keyRule leaves behind when no rule applies.
      this.#key = undefined;
    }
  }

  /** A string token as written out (AS_RECEIVED: as it came), or a LongToken for the walk's driver to mask. */
  #stringToken(raw: string): string | LongToken | typeof AS_RECEIVED {
    const decoded = decodedString(raw);
    if (this.#stringIsKey) {
      this.#stringIsKey = false;
      const keys = this.#keys[this.#keys.length - 1];
      if (keys !== undefined && !keys.add(decoded)) this.#sawDuplicate = true;
      this.#key = decoded;
      return this.#maskedString(raw, decoded);
    }
    const byKey = this.#keyRule(decoded);
    if (byKey !== undefined) return this.#replaced(JSON.stringify(byKey));
    if (!this.#values) return AS_RECEIVED;
    return this.#maskedString(raw, decoded);
  }

  /**
   * A key or string value through the text rules, written as received when they leave it alone. A
   * string without escapes is its raw content: masked with JSON-escaped replacements, it is written
   * back as it comes, never re-encoded whole.
   */
  #maskedString(raw: string, decoded: string): string | LongToken | typeof AS_RECEIVED {
    const jsonEscape = raw === decoded;
    if (decoded.length > MASK_STEP_CHARS) {
      return {
        text: decoded,
        jsonEscape,
        done: (text, escaped) => {
          const written = this.#stringWritten(decoded, text, escaped);
          return written === AS_RECEIVED ? `"${raw}"` : written;
        },
      };
    }
    return this.#stringWritten(decoded, maskToken(decoded, this.#profile, this.#counter, this.#clean, jsonEscape, this.#ascii), jsonEscape);
  }

  /** A string whose text `decoded` masked to `masked` (JSON-escaped already when `escaped`), as written out. */
  #stringWritten(decoded: string, masked: string, escaped: boolean): string | typeof AS_RECEIVED {
    if (masked === decoded) return AS_RECEIVED;
    return this.#replaced(escaped ? `"${masked}"` : JSON.stringify(masked));
  }

  /** Notes that a token is written otherwise than received. */
  #replaced(token: string): string {
    this.#changed = true;
    return token;
  }

  /**
   * A string too long to hold: its decoded text streams through a text channel (holding back only what
   * could still begin a match) and is written back JSON-escaped. `closing` ends it.
   */
  #streamString(closing: boolean): string {
    let out = '';
    // Written back from its decoded text: escapes may be spelled otherwise than received.
    this.#changed = true;
    if (this.#stream === null) {
      const rule = this.#stringIsKey ? undefined : this.#keyRule('');
      this.#stream = { channel: new TextChannel(this.#profile.text, this.#counter), replaced: rule !== undefined };
      // A json_keys value is replaced whole: its replacement is written now, the rest of it never.
      out = rule === undefined ? '"' : JSON.stringify(rule).slice(0, -1);
      this.#stringIsKey = false;
    }
    const cut = closing ? this.#pending.length : completeEscapes(this.#pending);
    const raw = this.#pending.slice(0, cut);
    this.#pending = this.#pending.slice(cut);
    const { channel, replaced } = this.#stream;
    // Read even when its value is replaced: a string JSON would not read is refused either way.
    const decoded = decodedString(raw);
    if (!replaced) {
      const masked = this.#profile.text.empty ? decoded : channel.push(decoded) + (closing ? channel.end() : '');
      out += JSON.stringify(masked).slice(1, -1);
    }
    if (closing) {
      this.#stream = null;
      out += '"';
    }
    return out;
  }

  /** A number or literal token as written out (AS_RECEIVED: as it came), or a LongToken for the walk's driver to mask. */
  #finishScalar(): string | LongToken | typeof AS_RECEIVED {
    const token = this.#pending;
    const state = this.#state;
    this.#pending = '';
    this.#state = 'out';
    if (state === 'literal') {
      if (token !== 'true' && token !== 'false' && token !== 'null') throw new InvalidJsonText(`unexpected literal ${token.slice(0, 16)}`);
      const byKey = this.#keyRule(token);
      return byKey === undefined ? AS_RECEIVED : this.#replaced(JSON.stringify(byKey));
    }
    if (!isJsonNumber(token)) throw new InvalidJsonText('invalid number');
    const byKey = this.#keyRule(token);
    if (byKey !== undefined) return this.#replaced(JSON.stringify(byKey));
    const integer = integerPart(token);
    if (integer === undefined) return AS_RECEIVED;
    if (integer.length > MASK_STEP_CHARS) {
      return {
        text: integer,
        jsonEscape: false,
        done: (masked) => {
          const written = this.#numberWritten(token, integer, masked);
          return written === AS_RECEIVED ? token : written;
        },
      };
    }
    return this.#numberWritten(token, integer, maskToken(integer, this.#profile, this.#counter, this.#clean));
  }

  /** A number whose integer digits masked to `masked`: as a JSON string when they hold a value. */
  #numberWritten(token: string, integer: string, masked: string): string | typeof AS_RECEIVED {
    if (masked !== integer) return this.#replaced(JSON.stringify(masked + token.slice(integer.length)));
    // A JavaScript client reads an exponent (4.111111111111111e15) or an integer past 2^53 as other
    // digits than the token's: those are masked too. They are short (at most 21 digits before an exponent).
    const read = jsReading(token);
    if (read === undefined) return AS_RECEIVED;
    const readInteger = integerPart(read)!;
    const readMasked = maskToken(readInteger, this.#profile, this.#counter, this.#clean);
    return readMasked === readInteger ? AS_RECEIVED : this.#replaced(JSON.stringify(readMasked + read.slice(readInteger.length)));
  }

  /** The replacement a `json_keys` rule gives the scalar of the current key, or undefined. */
  #keyRule(value: string): string | undefined {
    const key = this.#key;
    this.#key = undefined;
    // Without values, the parsed document's masking has applied json_keys already.
    if (!this.#values) return undefined;
    const { jsonKeys } = this.#profile;
    const rule = this.#forced?.rule ?? (key === undefined || jsonKeys.size === 0 ? undefined : jsonKeys.get(key.toLowerCase()));
    if (rule === undefined) return undefined;
    this.#counter.add(rule.name, `json_key:${rule.name}`);
    return replacementFor(value, labelOf(rule.name), rule.replacement);
  }
}

/**
 * A key, string or integer through the text rules, remembering short clean ones in `clean`;
 * `jsonEscape` writes the replacements as JSON string content (for a string's raw content). `ascii`:
 * the text is known to be ASCII, so raw content (which holds no backslash) reads as it is.
 */
function maskToken(text: string, profile: CompiledProfile, counter: MaskingCounter, clean: CleanTokens, jsonEscape = false, ascii = false): string {
  // Only short texts are remembered; hashing a long one to look it up would cost a pass over it.
  if (profile.text.empty || (text.length <= CLEAN_MAX_LENGTH && clean.has(text))) return text;
  // A string holding JSON (tool-call arguments) has escapes of its own that its reader decodes.
  // (Raw content without escapes holds no backslash, so it never takes that path.)
  const masked =
    !jsonEscape && text.includes('\\u') ? maskJsonLikeText(text, profile, counter) : profile.text.mask(text, counter, jsonEscape ? jsonContent : undefined, jsonEscape && ascii);
  if (masked === text && text.length <= CLEAN_MAX_LENGTH) clean.add(text);
  return masked;
}

/** `maskToken` for a long text: the text rules run in slices with turns of the event loop between. */
async function maskTokenAsync(text: string, profile: CompiledProfile, counter: MaskingCounter, clock: TurnClock): Promise<string> {
  // Too long to be remembered as clean (CLEAN_MAX_LENGTH), so the clean set is neither read nor filled.
  if (profile.text.empty) return text;
  return text.includes('\\u') ? maskJsonLikeTextAsync(text, profile, counter, clock) : profile.text.maskAsync(text, counter, clock);
}

/**
 * A JSON number's integer digits, or undefined. They are what an identifier stored as a number is; the
 * digits of a fraction (an embedding's 0.0000064336928) are not, and reading them as text would mask
 * measurements.
 */
function integerPart(token: string): string | undefined {
  // `/^-?[0-9]+/` read a code unit at a time: a pattern's match array costs more than the few digits.
  const start = token.charCodeAt(0) === 0x2d ? 1 : 0;
  let end = start;
  while (end < token.length && isDigitCode(token.charCodeAt(end))) end++;
  return end === start ? undefined : token.slice(0, end);
}

function isDigitCode(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * How a JavaScript parser writes a number token whose integer digits it reads differently (an exponent,
 * more digits than a double holds), or undefined when they read the same.
 */
function jsReading(token: string): string | undefined {
  if (token.length <= 15 && !token.includes('e') && !token.includes('E')) return undefined;
  const read = String(Number(token));
  const integer = integerPart(read);
  // Infinity (1e400) has no digits to read.
  return integer === undefined || integer === integerPart(token) ? undefined : read;
}

/** What a JSON number becomes when its integer digits hold a value, or undefined. */
function numberReplacement(token: string, mask: (text: string) => string): string | undefined {
  const integer = integerPart(token);
  if (integer === undefined) return undefined;
  const masked = mask(integer);
  return masked === integer ? undefined : masked + token.slice(integer.length);
}

/**
 * Masks the object keys and numbers of a parsed document in place (string values are the caller's):
 * a masked key renames its member, keeping the order; a number that holds a value becomes a string.
 * Numbers are read as a client's parser gives them (`String(n)`). Returns whether anything changed.
 */
export function maskKeysAndNumbers(root: unknown, profile: CompiledProfile, counter: MaskingCounter): boolean {
  if (profile.text.empty) return false;
  const clean = cleanSetOf(profile);
  const mask = (text: string): string => maskToken(text, profile, counter, clean);
  let changed = false;
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const v: unknown = node[i];
        if (typeof v === 'number') {
          const replaced = numberReplacement(String(v), mask);
          if (replaced !== undefined) {
            node[i] = replaced;
            changed = true;
          }
        } else if (v !== null && typeof v === 'object') stack.push(v);
      }
    } else if (node !== null && typeof node === 'object') {
      const obj = node as Record<string, unknown>;
      const keys = Object.keys(obj);
      let renamed = false;
      const entries: [string, unknown][] = [];
      for (const k of keys) {
        const key = mask(k);
        if (key !== k) renamed = true;
        let v = obj[k];
        if (typeof v === 'number') {
          const replaced = numberReplacement(String(v), mask);
          if (replaced !== undefined) {
            v = replaced;
            obj[k] = v;
            changed = true;
          }
        } else if (v !== null && typeof v === 'object') stack.push(v);
        entries.push([key, v]);
      }
      if (renamed) {
        for (const k of keys) delete obj[k];
        for (const [k, v] of entries) obj[k] = v;
        changed = true;
      }
    }
  }
  return changed;
}

/** The length of the longest prefix of a string's raw text that ends on no unfinished escape. */
function completeEscapes(raw: string): number {
  let at = raw.indexOf('\\');
  let safe = at === -1 ? raw.length : at;
  while (at !== -1) {
    const size = raw[at + 1] === 'u' ? 6 : 2;
    if (at + size > raw.length) return at;
    safe = at + size;
    at = raw.indexOf('\\', safe);
    if (at === -1) safe = raw.length;
    else safe = at;
  }
  return safe;
}

/** The error for character `c` at `i` where the grammar does not allow it. */
function unexpected(c: number, i: number): InvalidJsonText {
  return new InvalidJsonText(`unexpected ${JSON.stringify(String.fromCharCode(c))} at ${i}`);
}

/** The index of the quote that closes a string whose raw text so far is `before`, from `at`; -1 when none. */
function closingQuote(text: string, at: number, before: string): number {
  let from = at;
  for (;;) {
    const q = text.indexOf('"', from);
    if (q === -1) return -1;
    let backslashes = 0;
    for (let k = q - 1; k >= at && text.charCodeAt(k) === 0x5c; k--) backslashes++;
    if (backslashes === q - at) for (let k = before.length - 1; k >= 0 && before.charCodeAt(k) === 0x5c; k--) backslashes++;
    if (backslashes % 2 === 0) return q;
    from = q + 1;
  }
}

/**
 * Masks text that should be JSON but is not one document (invalid JSON under a JSON type): a string
 * literal with escapes is first rewritten as the text it decodes to (masked, as a JSON string), so no
 * escape hides a value; then the whole text is masked as text, so rules that read a key with its value
 * still see both.
 */
export function maskJsonLikeText(text: string, profile: CompiledProfile, counter: MaskingCounter): string {
  if (profile.text.empty) return text;
  return profile.text.mask(unescapedLiterals(text, profile, counter), counter);
}

/** `maskJsonLikeText` with the text rules run in slices, turns of the event loop between them. */
export async function maskJsonLikeTextAsync(text: string, profile: CompiledProfile, counter: MaskingCounter, clock: TurnClock): Promise<string> {
  if (profile.text.empty) return text;
  return profile.text.maskAsync(await unescapedLiteralsAsync(text, profile, counter, clock), counter, clock);
}

/** A string literal of JSON-like text: its raw text in group 1. */
const STRING_LITERAL = /"((?:[^"\\]|\\.)*)"/gs;

/** `text` with each string literal that holds an escape rewritten as its masked decoded text. */
function unescapedLiterals(text: string, profile: CompiledProfile, counter: MaskingCounter): string {
  return text.includes('\\')
    ? text.replace(STRING_LITERAL, (literal: string, raw: string) => {
        const decoded = escapedLiteral(raw);
        if (decoded === undefined) return literal;
        const masked = profile.text.mask(decoded, counter);
        return masked === decoded ? literal : JSON.stringify(masked);
      })
    : text;
}

/** `unescapedLiterals` a literal at a time, a long one masked in slices, with turns of the event loop between. */
async function unescapedLiteralsAsync(text: string, profile: CompiledProfile, counter: MaskingCounter, clock: TurnClock): Promise<string> {
  if (!text.includes('\\')) return text;
  // A pattern of its own: the shared one's lastIndex would be moved by a synchronous call between turns.
  const literals = new RegExp(STRING_LITERAL.source, STRING_LITERAL.flags);
  let out = '';
  let pos = 0;
  for (let m = literals.exec(text); m !== null; m = literals.exec(text)) {
    const decoded = escapedLiteral(m[1]!);
    if (decoded === undefined) continue;
    const masked = await profile.text.maskAsync(decoded, counter, clock);
    if (masked !== decoded) {
      out += text.slice(pos, m.index) + JSON.stringify(masked);
      pos = m.index + m[0].length;
    }
    await clock.pause();
  }
  return pos === 0 ? text : out + text.slice(pos);
}

/** The decoded text of a string literal's raw text that holds an escape; undefined when it holds none or is invalid. */
function escapedLiteral(raw: string): string | undefined {
  if (!raw.includes('\\')) return undefined;
  try {
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    return undefined;
  }
}
