import { SluiceError } from '../../shared/errors.js';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import { maskJson, maskJsonAsync } from './json-masker.js';
import {
  finishParsedJson,
  finishParsedJsonAsync,
  JsonTokenBodyMasker,
  maskEveryCandidate,
  maskEveryCandidateAsync,
  scanJsonTokens,
  scanJsonTokensAsync,
} from './json-token-body-masker.js';
import { InvalidJsonText, maskJsonLikeText, maskJsonLikeTextAsync } from './json-token-masker.js';
import type { MaskingCounter } from './masking-summary.js';
import { MASK_STEP_CHARS, TurnClock } from './text-masker.js';

/**
 * Collects a JSON body up to the profile's `max_json_body`, then parses, masks and re-serializes it
 * (the original bytes when nothing was masked); object keys and numbers are masked too, and a repeated
 * key has every candidate masked. A profile of text rules only needs no parsed document: its bodies
 * are masked token by token, unchanged tokens keeping their bytes, and not parsed at all (the token walk
 * refuses what JSON.parse refuses). Invalid JSON is masked as text (string escapes decoded), never passed
 * raw. A body over the limit is masked token by token as it streams, staying valid JSON, unless the
 * profile has `json_paths` or selectors, which need the parsed document: the body is then refused.
 */
export class JsonBodyMasker implements BodyMasker {
  readonly #profile: CompiledProfile;
  readonly #counter: MaskingCounter;
  #chunks: Buffer[] = [];
  #size = 0;
  /** Past max_json_body: the body streams through a token masker, so it stays valid JSON. */
  #asText: JsonTokenBodyMasker | null = null;

  constructor(profile: CompiledProfile, counter: MaskingCounter) {
    this.#profile = profile;
    this.#counter = counter;
  }

  write(chunk: Buffer): string {
    if (this.#asText !== null) return this.#asText.write(chunk);
    const held = this.#collect(chunk);
    return held === null ? '' : this.#asText!.write(held);
  }

  end(): string | Buffer {
    if (this.#asText !== null) return this.#asText.end();
    return this.maskWhole(this.#body());
  }

  /** Masks a whole body at once, nothing written before; `text` is its UTF-8 text when the caller has decoded it. */
  maskWhole(body: Buffer, text = body.toString('utf8')): string | Buffer {
    if (textRulesOnly(this.#profile)) {
      // No parse: the token walk refuses what JSON.parse refuses, so a body it reads whole is JSON. Its counts
      // are kept apart until then: a body that turns out not to be JSON is masked again, as text, and counted
      // once. The text pass starts with what the walk spent of the exchange's budget of costly checks (phone
      // numbers): past that budget a candidate is masked without its check, so a spent budget masks more, not less.
      const trial = this.#counter.trial();
      try {
        const masked = maskEveryCandidate(text, body, this.#profile, trial);
        this.#counter.commit(trial);
        return masked;
      } catch (err) {
        if (!(err instanceof InvalidJsonText)) throw err;
        return this.#maskAsText(body, text);
      }
    }
    const parsed = parseJson(text);
    if (parsed === NOT_JSON) return this.#maskAsText(body, text);
    const scan = scanJsonTokens(text, this.#profile);
    if (scan.duplicateKey) return maskEveryCandidate(text, body, this.#profile, this.#counter);
    const result = maskJson(parsed, this.#profile, this.#counter);
    return finishParsedJson(text, body, result, scan, this.#profile, this.#counter);
  }

  async writeAsync(chunk: Buffer): Promise<string> {
    if (this.#asText !== null) return this.#asText.writeAsync(chunk);
    const held = this.#collect(chunk);
    return held === null ? '' : this.#asText!.writeAsync(held);
  }

  async endAsync(): Promise<string | Buffer> {
    if (this.#asText !== null) return this.#asText.endAsync();
    return this.maskWholeAsync(this.#body());
  }

  /** `maskWhole` in slices with turns of the event loop between them. */
  async maskWholeAsync(body: Buffer, text?: string): Promise<string | Buffer> {
    // A body of one step is masked at once: slicing it would only add turns of the event loop.
    if (body.length <= MASK_STEP_CHARS) return this.maskWhole(body, text);
    const clock = new TurnClock();
    text ??= body.toString('utf8');
    if (textRulesOnly(this.#profile)) {
      // As in maskWhole: the token walk is the check that the body is JSON. Its counts join the exchange's once
      // it has read the body whole: an exchange cut off in the middle of a large body's walk counts none of them.
      const trial = this.#counter.trial();
      try {
        const masked = await maskEveryCandidateAsync(text, body, this.#profile, trial, clock);
        this.#counter.commit(trial);
        return masked;
      } catch (err) {
        if (!(err instanceof InvalidJsonText)) throw err;
        return this.#maskAsTextAsync(body, text, clock);
      }
    }
    // Native parsing is linear and fast (a few ms per MiB); the masking after it is what is sliced.
    const parsed = parseJson(text);
    if (parsed === NOT_JSON) return this.#maskAsTextAsync(body, text, clock);
    await clock.pause();
    const scan = await scanJsonTokensAsync(text, this.#profile, clock);
    if (scan.duplicateKey) return maskEveryCandidateAsync(text, body, this.#profile, this.#counter, clock);
    const result = await maskJsonAsync(parsed, this.#profile, this.#counter, {}, clock);
    await clock.pause();
    return finishParsedJsonAsync(text, body, result, scan, this.#profile, this.#counter, clock);
  }

  /** A body that is not JSON, masked as text (string escapes decoded); the original bytes when nothing changed. */
  #maskAsText(body: Buffer, text: string): string | Buffer {
    const masked = maskJsonLikeText(text, this.#profile, this.#counter);
    return masked === text ? body : masked;
  }

  async #maskAsTextAsync(body: Buffer, text: string, clock: TurnClock): Promise<string | Buffer> {
    const masked = await maskJsonLikeTextAsync(text, this.#profile, this.#counter, clock);
    return masked === text ? body : masked;
  }

  /** Keeps `chunk`; past the limit, switches to text masking and returns every byte held so far. */
  #collect(chunk: Buffer): Buffer | null {
    this.#size += chunk.length;
    this.#chunks.push(chunk);
    if (this.#size <= this.#profile.maxJsonBody) return null;
    if (this.#profile.jsonPaths.length > 0 || this.#profile.selectors.length > 0) {
      throw new SluiceError('ERR_MASKING_BLOCKED', {
        message: `The JSON response exceeds max_json_body (${this.#profile.maxJsonBody} bytes) and the masking profile needs it parsed (json_paths or selectors)`,
      });
    }
    this.#asText = new JsonTokenBodyMasker(this.#profile, this.#counter);
    const held = Buffer.concat(this.#chunks);
    this.#chunks = [];
    return held;
  }

  /** The whole body collected, released from this masker. */
  #body(): Buffer {
    const body = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [];
    return body;
  }
}

const NOT_JSON = Symbol('not JSON');

/** `text` parsed as a client's parser reads it, or NOT_JSON. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return NOT_JSON;
  }
}

/**
 * Whether every rule of the profile is a text rule (no json_keys, json_paths or selectors): the parsed
 * document then adds nothing, and one token pass over the text masks every string, key and number as
 * a parser reads it, keeping the bytes of everything it leaves alone, repeated keys included.
 */
function textRulesOnly(profile: CompiledProfile): boolean {
  return profile.jsonKeys.size === 0 && profile.jsonPaths.length === 0 && profile.selectors.length === 0;
}
