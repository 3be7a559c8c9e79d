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
import { maskJsonLikeText, maskJsonLikeTextAsync } from './json-token-masker.js';
import type { MaskingCounter } from './masking-summary.js';
import { TurnClock } from './text-masker.js';

/**
 * Collects a JSON body up to the profile's `max_json_body`, then parses, masks and re-serializes it
 * (the original bytes when nothing was masked); object keys and numbers are masked too, and a repeated
 * key has every candidate masked. Invalid JSON is masked as text (string escapes decoded), never passed
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
    const body = this.#body();
    const text = body.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      const masked = maskJsonLikeText(text, this.#profile, this.#counter);
      return masked === text ? body : masked;
    }
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
    const clock = new TurnClock();
    const body = this.#body();
    const text = body.toString('utf8');
    let parsed: unknown;
    try {
      // Native parsing is linear and fast (a few ms per MiB); the masking after it is what is sliced.
      parsed = JSON.parse(text);
    } catch {
      const masked = await maskJsonLikeTextAsync(text, this.#profile, this.#counter, clock);
      return masked === text ? body : masked;
    }
    await clock.pause();
    const scan = await scanJsonTokensAsync(text, this.#profile, clock);
    if (scan.duplicateKey) return maskEveryCandidateAsync(text, body, this.#profile, this.#counter, clock);
    const result = await maskJsonAsync(parsed, this.#profile, this.#counter, {}, clock);
    await clock.pause();
    return finishParsedJsonAsync(text, body, result, scan, this.#profile, this.#counter, clock);
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
