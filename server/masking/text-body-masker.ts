import { StringDecoder } from 'node:string_decoder';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import type { MaskingCounter } from './masking-summary.js';
import { MASK_STEP_CHARS, sliceEnd, TextChannel, TurnClock } from './text-masker.js';

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

  writeAsync(chunk: Buffer): Promise<string> {
    return this.#pushSliced(this.#decoder.write(chunk));
  }

  async endAsync(): Promise<string> {
    return (await this.#pushSliced(this.#decoder.end())) + this.#channel.end();
  }

  /** Pushes `text` a step at a time, giving the event loop a turn whenever one is due. */
  async #pushSliced(text: string): Promise<string> {
    if (text.length <= MASK_STEP_CHARS) return this.#channel.push(text);
    const clock = new TurnClock();
    let out = '';
    for (let at = 0; at < text.length; ) {
      await clock.pause();
      const end = sliceEnd(text, at, MASK_STEP_CHARS);
      out += this.#channel.push(text.slice(at, end));
      at = end;
    }
    return out;
  }
}
