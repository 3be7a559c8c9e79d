import { SluiceError } from '../../shared/errors.js';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import { maskJson } from './json-masker.js';
import type { MaskingCounter } from './masking-summary.js';
import { TextBodyMasker } from './text-body-masker.js';

/**
 * Collects a JSON body up to the profile's `max_json_body`, then parses, masks and re-serializes it
 * (the original bytes when nothing was masked). Invalid JSON is masked as text, never passed raw. A body
 * over the limit is masked as text as it streams, unless the profile has `json_paths` or selectors,
 * which need the parsed document: the body is then refused.
 */
export class JsonBodyMasker implements BodyMasker {
  readonly #profile: CompiledProfile;
  readonly #counter: MaskingCounter;
  #chunks: Buffer[] = [];
  #size = 0;
  #asText: TextBodyMasker | null = null;

  constructor(profile: CompiledProfile, counter: MaskingCounter) {
    this.#profile = profile;
    this.#counter = counter;
  }

  write(chunk: Buffer): string {
    if (this.#asText !== null) return this.#asText.write(chunk);
    this.#size += chunk.length;
    this.#chunks.push(chunk);
    if (this.#size <= this.#profile.maxJsonBody) return '';
    if (this.#profile.jsonPaths.length > 0 || this.#profile.selectors.length > 0) {
      throw new SluiceError('ERR_MASKING_BLOCKED', {
        message: `The JSON response exceeds max_json_body (${this.#profile.maxJsonBody} bytes) and the masking profile needs it parsed (json_paths or selectors)`,
      });
    }
    this.#asText = new TextBodyMasker(this.#profile, this.#counter);
    const held = Buffer.concat(this.#chunks);
    this.#chunks = [];
    return this.#asText.write(held);
  }

  end(): string | Buffer {
    if (this.#asText !== null) return this.#asText.end();
    const body = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [];
    const text = body.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      const masked = this.#profile.text.mask(text, this.#counter);
      return masked === text ? body : masked;
    }
    const result = maskJson(parsed, this.#profile, this.#counter);
    return result.changed ? JSON.stringify(result.value) : body;
  }
}
