import { StringDecoder } from 'node:string_decoder';
import { SluiceError } from '../../shared/errors.js';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import type { JsonMaskResult } from './json-masker.js';
import { InvalidJsonText, JsonTokenMasker } from './json-token-masker.js';
import { MaskingCounter } from './masking-summary.js';
import { TurnClock } from './text-masker.js';

/** Characters tokenized between two looks at the clock: token masking runs at tens of MB/s. */
const TOKEN_STEP_CHARS = 64 * 1024;

/**
 * A JSON body too large to parse, masked token by token as it streams (see JsonTokenMasker): it stays
 * valid JSON, so a client's parser still reads it. Text that turns out not to be JSON is refused
 * (ERR_MASKING_BLOCKED) at that point: part of it may have been sent, the rest never is.
 */
export class JsonTokenBodyMasker implements Required<BodyMasker> {
  readonly #decoder = new StringDecoder('utf8');
  readonly #tokens: JsonTokenMasker;

  constructor(profile: CompiledProfile, counter: MaskingCounter) {
    this.#tokens = new JsonTokenMasker(profile, counter);
  }

  write(chunk: Buffer): string {
    return this.#push(this.#decoder.write(chunk));
  }

  end(): string {
    return this.#push(this.#decoder.end()) + this.#guard(() => this.#tokens.end());
  }

  async writeAsync(chunk: Buffer): Promise<string> {
    return this.#pushSliced(this.#decoder.write(chunk));
  }

  async endAsync(): Promise<string> {
    return (await this.#pushSliced(this.#decoder.end())) + this.#guard(() => this.#tokens.end());
  }

  #push(text: string): string {
    return text === '' ? '' : this.#guard(() => this.#tokens.push(text));
  }

  async #pushSliced(text: string): Promise<string> {
    if (text.length <= TOKEN_STEP_CHARS) return this.#push(text);
    const clock = new TurnClock();
    let out = '';
    for (let at = 0; at < text.length; at += TOKEN_STEP_CHARS) {
      await clock.pause();
      out += this.#push(text.slice(at, at + TOKEN_STEP_CHARS));
    }
    return out;
  }

  #guard(step: () => string): string {
    try {
      return step();
    } catch (err) {
      if (!(err instanceof InvalidJsonText)) throw err;
      throw new SluiceError('ERR_MASKING_BLOCKED', { message: `The JSON response exceeds max_json_body and is not valid JSON (${err.message}): it cannot be masked as JSON` });
    }
  }
}

/** What a first token pass over a parsed body found: its keys and numbers masked, and whether a key repeats. */
export interface JsonTokenScan {
  readonly duplicateKey: boolean;
  readonly output: string;
  readonly counts: MaskingCounter;
}

/** Masks the object keys and numbers of a JSON text (the parsed walk reads neither), counting apart. */
export function scanJsonTokens(raw: string, profile: CompiledProfile): JsonTokenScan {
  const counts = new MaskingCounter();
  // No rule can match anywhere: keys and numbers are clean, and so is every candidate of a repeated key.
  if (!profile.text.mayMatchIn(raw)) return { duplicateKey: false, output: raw, counts };
  const tokens = new JsonTokenMasker(profile, counts, { values: false, maxString: Infinity });
  const output = tokens.push(raw) + tokens.end();
  return { duplicateKey: tokens.sawDuplicateKey, output, counts };
}

/**
 * A document that repeats a key is read differently by different parsers (first or last wins), so
 * every candidate value is masked from the original text. With json_paths or selectors, which need one
 * reading, it is refused.
 */
export function maskEveryCandidate(raw: string, body: Buffer, profile: CompiledProfile, counter: MaskingCounter): string | Buffer {
  if (profile.jsonPaths.length > 0 || profile.selectors.length > 0) {
    throw new SluiceError('ERR_MASKING_BLOCKED', {
      message: 'The JSON response repeats an object key, so its reading depends on the parser, and the masking profile needs one reading (json_paths or selectors)',
    });
  }
  const every = new JsonTokenMasker(profile, counter, { maxString: Infinity });
  const all = every.push(raw) + every.end();
  return all === raw ? body : all;
}

/**
 * Finishes a parsed JSON body whose string values the walk masked (`masked`): object keys and numbers
 * masked as `scan` found them, or, when the walk rewrote the document, token by token in the new text.
 * Returns the original bytes when nothing changed.
 */
export function finishParsedJson(raw: string, body: Buffer, masked: JsonMaskResult, scan: JsonTokenScan, profile: CompiledProfile, counter: MaskingCounter): string | Buffer {
  if (!masked.changed) {
    for (const e of scan.counts.entries()) for (let i = 0; i < e.count; i++) counter.add(e.entity, e.rule);
    return scan.output === raw ? body : scan.output;
  }
  const text = JSON.stringify(masked.value);
  if (!profile.text.mayMatchIn(text)) return text;
  const tokens = new JsonTokenMasker(profile, counter, { values: false, maxString: Infinity });
  return tokens.push(text) + tokens.end();
}
