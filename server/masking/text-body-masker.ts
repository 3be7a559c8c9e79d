import { StringDecoder } from 'node:string_decoder';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import type { MaskingCounter } from './masking-summary.js';
import { TextChannel } from './text-masker.js';

/** Masks a text body as it streams, holding back only the tail that could still begin a match. */
export class TextBodyMasker implements BodyMasker {
  readonly #decoder = new StringDecoder('utf8');
  readonly #channel: TextChannel;

  constructor(profile: CompiledProfile, counter: MaskingCounter) {
    this.#channel = new TextChannel(profile.text, counter);
  }

  write(chunk: Buffer): string {
    return this.#channel.push(this.#decoder.write(chunk));
  }

  end(): string {
    return this.#channel.push(this.#decoder.end()) + this.#channel.end();
  }
}
