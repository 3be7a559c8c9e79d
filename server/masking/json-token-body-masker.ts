import { StringDecoder } from 'node:string_decoder';
import { SluiceError } from '../../shared/errors.js';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import type { JsonMaskResult } from './json-masker.js';
import { InvalidJsonText, JsonTokenMasker } from './json-token-masker.js';
import { MaskingCounter } from './masking-summary.js';
import { TurnClock } from './text-masker.js';

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
    return this.#pushAsync(this.#decoder.write(chunk));
  }

  async endAsync(): Promise<string> {
    const clock = new TurnClock();
    return (await this.#pushAsync(this.#decoder.end(), clock)) + (await this.#guardAsync(() => this.#tokens.endAsync(clock)));
  }

  #push(text: string): string {
    return text === '' ? '' : this.#guard(() => this.#tokens.push(text));
  }

  async #pushAsync(text: string, clock = new TurnClock()): Promise<string> {
    return text === '' ? '' : this.#guardAsync(() => this.#tokens.pushAsync(text, clock));
  }

  #guard(step: () => string): string {
    try {
      return step();
    } catch (err) {
      throw notJson(err);
    }
  }

  async #guardAsync(step: () => Promise<string>): Promise<string> {
    try {
      return await step();
    } catch (err) {
      throw notJson(err);
    }
  }
}

/** An InvalidJsonText as the refusal a client sees; any other error as it is. */
function notJson(err: unknown): unknown {
  if (!(err instanceof InvalidJsonText)) return err;
  return new SluiceError('ERR_MASKING_BLOCKED', { message: `The JSON response exceeds max_json_body and is not valid JSON (${err.message}): it cannot be masked as JSON` });
}

/** What a first token pass over a parsed body found: its keys and numbers masked, and whether a key repeats. */
export interface JsonTokenScan {
  readonly duplicateKey: boolean;
  readonly output: string;
  /** Whether `output` differs from the text scanned. */
  readonly changed: boolean;
  readonly counts: MaskingCounter;
}

/** Masks the object keys and numbers of a JSON text (the parsed walk reads neither), counting apart. */
export function scanJsonTokens(raw: string, profile: CompiledProfile): JsonTokenScan {
  const counts = new MaskingCounter();
  // No rule can match anywhere: keys and numbers are clean, and so is every candidate of a repeated key.
  if (!profile.text.mayMatchIn(raw)) return { duplicateKey: false, output: raw, changed: false, counts };
  const tokens = new JsonTokenMasker(profile, counts, { values: false, maxString: Infinity });
  const output = tokens.push(raw) + tokens.end();
  return { duplicateKey: tokens.sawDuplicateKey, output, changed: tokens.changed, counts };
}

/** `scanJsonTokens` with the same result, giving the event loop a turn whenever `clock` says one is due. */
export async function scanJsonTokensAsync(raw: string, profile: CompiledProfile, clock: TurnClock): Promise<JsonTokenScan> {
  const counts = new MaskingCounter();
  if (!profile.text.mayMatchIn(raw)) return { duplicateKey: false, output: raw, changed: false, counts };
  const tokens = new JsonTokenMasker(profile, counts, { values: false, maxString: Infinity });
  const output = (await tokens.pushAsync(raw, clock)) + (await tokens.endAsync(clock));
  return { duplicateKey: tokens.sawDuplicateKey, output, changed: tokens.changed, counts };
}

/**
 * A document that repeats a key is read differently by different parsers (first or last wins), so
 * every candidate value is masked from the original text. With json_paths or selectors, which need one
 * reading, it is refused.
 */
export function maskEveryCandidate(raw: string, body: Buffer, profile: CompiledProfile, counter: MaskingCounter): string | Buffer {
  const every = everyCandidateMasker(profile, counter, isAscii(raw));
  const all = every.push(raw) + every.end();
  // Unchanged, the output is the text: the original bytes go out, without flattening or comparing it.
  return every.changed ? all : body;
}

/** `maskEveryCandidate` with the same result, giving the event loop a turn whenever `clock` says one is due. */
export async function maskEveryCandidateAsync(raw: string, body: Buffer, profile: CompiledProfile, counter: MaskingCounter, clock: TurnClock): Promise<string | Buffer> {
  const every = everyCandidateMasker(profile, counter, isAscii(raw));
  const all = (await every.pushAsync(raw, clock)) + (await every.endAsync(clock));
  return every.changed ? all : body;
}

function everyCandidateMasker(profile: CompiledProfile, counter: MaskingCounter, ascii: boolean): JsonTokenMasker {
  if (profile.jsonPaths.length > 0 || profile.selectors.length > 0) {
    throw new SluiceError('ERR_MASKING_BLOCKED', {
      message: 'The JSON response repeats an object key, so its reading depends on the parser, and the masking profile needs one reading (json_paths or selectors)',
    });
  }
  return new JsonTokenMasker(profile, counter, { maxString: Infinity, ascii });
}

/** Whether `text` is all ASCII: counted on the whole text at once (its strings, sliced out of it, would each cost a pass). */
function isAscii(text: string): boolean {
  return Buffer.byteLength(text, 'utf8') === text.length;
}

/**
 * Finishes a parsed JSON body whose string values the walk masked (`masked`): object keys and numbers
 * masked as `scan` found them, or, when the walk rewrote the document, token by token in the new text.
 * Returns the original bytes when nothing changed.
 */
export function finishParsedJson(raw: string, body: Buffer, masked: JsonMaskResult, scan: JsonTokenScan, profile: CompiledProfile, counter: MaskingCounter): string | Buffer {
  if (!masked.changed) {
    counter.commit(scan.counts);
    return scan.changed ? scan.output : body;
  }
  const text = JSON.stringify(masked.value);
  if (!profile.text.mayMatchIn(text)) return text;
  const tokens = new JsonTokenMasker(profile, counter, { values: false, maxString: Infinity });
  return tokens.push(text) + tokens.end();
}

/** `finishParsedJson` with the same result, giving the event loop a turn whenever `clock` says one is due. */
export async function finishParsedJsonAsync(
  raw: string,
  body: Buffer,
  masked: JsonMaskResult,
  scan: JsonTokenScan,
  profile: CompiledProfile,
  counter: MaskingCounter,
  clock: TurnClock,
): Promise<string | Buffer> {
  if (!masked.changed) return finishParsedJson(raw, body, masked, scan, profile, counter);
  // Native serializing is linear and fast, like the parsing before the walk; the token pass is sliced.
  const text = JSON.stringify(masked.value);
  if (!profile.text.mayMatchIn(text)) return text;
  await clock.pause();
  const tokens = new JsonTokenMasker(profile, counter, { values: false, maxString: Infinity });
  return (await tokens.pushAsync(text, clock)) + (await tokens.endAsync(clock));
}
