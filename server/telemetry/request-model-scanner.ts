/**
 * Finds the top-level `"model"` string of a JSON request body as its chunks go by, keeping a few bytes of
 * state and none of the body: a streamed request is never buffered for it, and a `"model"` key nested in
 * messages or metadata is not mistaken for the request's.
 */
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const KEY = Buffer.from('model');
/** Longest model name kept, in bytes of its JSON string; a longer value is no model name worth a span attribute. */
const MAX_VALUE = 256;

/** Where the scanner is in the top-level object. */
const At = {
  /** Before the body's first `{`. */
  Start: 0,
  /** In the top-level object, where a key may begin. */
  KeyNext: 1,
  /** In a top-level key. */
  InKey: 2,
  /** After a key, before its `:`. */
  Colon: 3,
  /** After the `:` of the `model` key, before its value. */
  ModelValue: 4,
  /** In the `model` string. */
  InModel: 5,
  /** Somewhere in a value that is not `model`'s (nested objects and strings tracked by depth). */
  Value: 6,
  /** Found, or the body is not an object: nothing more is read. */
  Done: 7,
} as const;
type At = (typeof At)[keyof typeof At];

/** Scans one request body; `push` its chunks in order, then read `model`. */
export class RequestModelScanner {
  #at: At = At.Start;
  /** Nesting depth inside a value: 0 at the top level of the object. */
  #depth = 0;
  #inString = false;
  #escaped = false;
  /** Bytes of the key read so far, as long as they still spell `model`. */
  #keyMatched = 0;
  #keyMismatch = false;
  #value: number[] = [];
  #model: string | undefined;

  /** The top-level `model` string, once it has been read whole. */
  get model(): string | undefined {
    return this.#model;
  }

  /** Whether nothing more can be learnt from further chunks. */
  get done(): boolean {
    return this.#at === At.Done;
  }

  push(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length && this.#at !== At.Done; i++) this.#step(chunk[i]!);
  }

  #step(b: number): void {
    const white = b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
    switch (this.#at) {
      case At.Start:
        if (white) return;
        this.#at = b === 0x7b ? At.KeyNext : At.Done;
        return;
      case At.KeyNext:
        if (b === QUOTE) {
          this.#at = At.InKey;
          this.#keyMatched = 0;
          this.#keyMismatch = false;
        } else if (b === 0x7d) this.#at = At.Done;
        return;
      case At.InKey:
        if (this.#escaped) {
          this.#escaped = false;
          this.#keyMismatch = true;
        } else if (b === BACKSLASH) {
          this.#escaped = true;
        } else if (b === QUOTE) {
          this.#at = At.Colon;
        } else if (!this.#keyMismatch && this.#keyMatched < KEY.length && KEY[this.#keyMatched] === b) {
          this.#keyMatched++;
        } else {
          this.#keyMismatch = true;
        }
        return;
      case At.Colon:
        if (b !== COLON) return;
        this.#at = !this.#keyMismatch && this.#keyMatched === KEY.length ? At.ModelValue : At.Value;
        this.#depth = 0;
        this.#inString = false;
        return;
      case At.ModelValue:
        if (white) return;
        if (b === QUOTE) {
          this.#at = At.InModel;
          this.#value = [QUOTE];
        } else {
          // A model that is not a string: the value is skipped like any other.
          this.#at = At.Value;
          this.#step(b);
        }
        return;
      case At.InModel:
        this.#value.push(b);
        if (this.#value.length > MAX_VALUE) {
          this.#at = At.Done;
        } else if (this.#escaped) {
          this.#escaped = false;
        } else if (b === BACKSLASH) {
          this.#escaped = true;
        } else if (b === QUOTE) {
          this.#at = At.Done;
          try {
            const value: unknown = JSON.parse(Buffer.from(this.#value).toString('utf8'));
            if (typeof value === 'string' && value !== '') this.#model = value;
          } catch {
            // Not a JSON string after all: no model.
          }
        }
        return;
      case At.Value:
        if (this.#inString) {
          if (this.#escaped) this.#escaped = false;
          else if (b === BACKSLASH) this.#escaped = true;
          else if (b === QUOTE) this.#inString = false;
          return;
        }
        if (b === QUOTE) this.#inString = true;
        else if (b === 0x7b || b === 0x5b) this.#depth++;
        else if (b === 0x7d || b === 0x5d) {
          if (this.#depth === 0) this.#at = At.Done;
          else this.#depth--;
        } else if (b === COMMA && this.#depth === 0) this.#at = At.KeyNext;
        return;
      case At.Done:
        return;
    }
  }
}
