import { SluiceError } from '../../shared/errors.js';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import { JsonBodyMasker } from './json-body-masker.js';
import { maskLogprobLists, mayHoldLogprobs, stripLogprobs } from './logprob-tokens.js';
import type { MaskingCounter } from './masking-summary.js';

/** Bytes of the previous chunk kept when looking for logprobs in a body too large to parse. */
const KEY_OVERLAP = 64;

/**
 * A JSON body whose token log-probabilities are dealt with first: each logprobs list masked as the text
 * its tokens spell (or removed, `logprobs: strip`), so no token carries part of a value that masking
 * each token alone would miss. Then the body goes through the JSON body masker as any other. Bodies
 * without logprobs are handed over unparsed.
 */
export class LogprobsJsonMasker implements BodyMasker {
  readonly #profile: CompiledProfile;
  readonly #counter: MaskingCounter;
  readonly #inner: JsonBodyMasker;
  #chunks: Buffer[] = [];
  #size = 0;
  /** Past max_json_body: the inner masker streams the body as text. */
  #passing = false;
  #tail = '';

  constructor(profile: CompiledProfile, counter: MaskingCounter) {
    this.#profile = profile;
    this.#counter = counter;
    this.#inner = new JsonBodyMasker(profile, counter);
  }

  write(chunk: Buffer): string | Buffer {
    const held = this.#take(chunk);
    return held === undefined ? '' : this.#inner.write(held);
  }

  async writeAsync(chunk: Buffer): Promise<string | Buffer> {
    const held = this.#take(chunk);
    return held === undefined ? '' : this.#inner.writeAsync(held);
  }

  end(): string | Buffer {
    if (this.#passing) return this.#inner.end();
    const { body, text } = this.#wholeBody();
    return this.#inner.maskWhole(body, text);
  }

  async endAsync(): Promise<string | Buffer> {
    if (this.#passing) return this.#inner.endAsync();
    const { body, text } = this.#wholeBody();
    return this.#inner.maskWholeAsync(body, text);
  }

  /** Holds a chunk while the body may still be parsed whole; past max_json_body, what the inner masker gets now. */
  #take(chunk: Buffer): Buffer | undefined {
    if (this.#passing) {
      this.#refuseLogprobs(chunk);
      return chunk;
    }
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    if (this.#size <= this.#profile.maxJsonBody) return undefined;
    this.#passing = true;
    const held = Buffer.concat(this.#chunks);
    this.#chunks = [];
    this.#refuseLogprobs(held);
    return held;
  }

  /**
   * The whole body with its logprobs lists masked (or stripped), the bytes as received when it has
   * none, with its text: decoded once, for both the logprobs and the body's masking.
   */
  #wholeBody(): { body: Buffer; text: string } {
    const body = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [];
    const text = body.toString('utf8');
    let doc: unknown;
    if (mayHoldLogprobs(text)) {
      try {
        doc = JSON.parse(text);
      } catch {
        // Not JSON: the inner masker masks it as text.
      }
    }
    const changed =
      doc !== undefined && (this.#profile.logprobs === 'strip' ? stripLogprobs(doc) : maskLogprobLists(doc, this.#profile.text, this.#counter));
    if (!changed) return { body, text };
    const rewritten = JSON.stringify(doc);
    return { body: Buffer.from(rewritten, 'utf8'), text: rewritten };
  }

  /**
   * Logprobs in a body too large to parse cannot be followed token by token, and text masking of the
   * raw JSON sees each token apart: such a body is refused rather than sent with a value spelled out.
   */
  #refuseLogprobs(chunk: Buffer): void {
    const text = this.#tail + chunk.toString('latin1');
    this.#tail = text.slice(-KEY_OVERLAP);
    if (mayHoldLogprobs(text)) {
      throw new SluiceError('ERR_MASKING_BLOCKED', {
        message: `The JSON response exceeds max_json_body (${this.#profile.maxJsonBody} bytes) and carries token logprobs, which masking must parse`,
      });
    }
  }
}
