import { StringDecoder } from 'node:string_decoder';
import { SluiceError } from '../../shared/errors.js';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import { DeltaTemplate } from './delta-template.js';
import { maskJson } from './json-masker.js';
import type { MaskingCounter } from './masking-summary.js';
import { newEvent, SseFramer, withData, type SseEvent } from './sse-framer.js';
import { readShape, type FlushEvent } from './stream-shapes.js';
import { TextChannel } from './text-masker.js';

/** Bound on open text channels of one stream (choices × fields × tool calls, content blocks). */
const MAX_CHANNELS = 1024;

interface OpenChannel {
  readonly channel: TextChannel;
  flush: (text: string) => FlushEvent;
}

/**
 * Masks a text/event-stream body event by event. Known deltas (OpenAI chat and Responses, Anthropic)
 * go through one TextChannel per choice or block, so PII split across events is caught while each event
 * still leaves at once, minus the held-back tail; that tail is flushed as an extra delta event of the
 * same shape just before the channel ends. Every other string is masked in place.
 */
export class SseMasker implements BodyMasker {
  readonly #profile: CompiledProfile;
  readonly #counter: MaskingCounter;
  readonly #decoder = new StringDecoder('utf8');
  readonly #framer: SseFramer;
  readonly #channels = new Map<string, OpenChannel>();
  /** Strings of this stream's events the text rules left alone (ids, model, object names). */
  readonly #clean = new Set<string>();
  /** The frame of the last plain delta event: the next ones usually differ only in their delta. */
  #template: DeltaTemplate | null = null;
  /** Events inserted so far: later `sequence_number`s (OpenAI Responses) move up by as many. */
  #inserted = 0;
  #lastSequence: number | undefined;
  #eol = '\n';

  constructor(profile: CompiledProfile, counter: MaskingCounter) {
    this.#profile = profile;
    this.#counter = counter;
    this.#framer = new SseFramer({ maxEvent: profile.maxJsonBody });
  }

  write(chunk: Buffer): string {
    let out = '';
    for (const ev of this.#framer.push(this.#decoder.write(chunk))) out += this.#event(ev);
    return out;
  }

  end(): string {
    let out = '';
    for (const ev of this.#framer.push(this.#decoder.end())) out += this.#event(ev);
    const last = this.#framer.end();
    if (last !== null) out += this.#event(last);
    return out + this.#flushWhere(() => true, undefined);
  }

  #event(ev: SseEvent): string {
    if (ev.data === undefined) return ev.raw;
    this.#eol = ev.eol;
    const template = this.#template;
    const delta = template?.match(ev.data);
    if (template && delta !== undefined) {
      const out = this.#channel(template.slot.key, template.slot.flush).channel.push(delta);
      return out === delta ? ev.raw : withData(ev, template.render(out));
    }
    this.#template = null;
    if (ev.data.trim() === '[DONE]') return this.#flushWhere(() => true, undefined) + ev.raw;
    let obj: unknown;
    try {
      obj = JSON.parse(ev.data);
    } catch {
      this.#refuseUnknown('an event whose data is not JSON');
      const masked = this.#profile.text.mask(ev.data, this.#counter);
      return masked === ev.data ? ev.raw : withData(ev, masked);
    }
    const reading = readShape(obj);
    if (reading.kind === 'unknown') this.#refuseUnknown('an event of unknown shape');
    const o = obj as Record<string, unknown>;
    const sequence = typeof o?.sequence_number === 'number' ? o.sequence_number : undefined;
    const slotKeys = new Set(reading.slots.map((s) => s.key));
    const before = this.#flushWhere((k) => reading.ends(k) && !slotKeys.has(k), sequence);

    // Deltas are masked by their channel; blank them so the generic pass below leaves them alone.
    const texts = reading.slots.map((s) => s.text);
    for (const s of reading.slots) s.set('');
    const framed = maskJson(obj, this.#profile, this.#counter, { clean: this.#clean }).changed;
    let changed = framed;
    reading.slots.forEach((s, i) => {
      let out = this.#channel(s.key, s.flush).channel.push(texts[i]!);
      if (reading.ends(s.key)) {
        out += this.#channels.get(s.key)!.channel.end();
        this.#channels.delete(s.key);
      }
      if (out !== texts[i]) changed = true;
      s.set(out);
    });
    if (sequence !== undefined) {
      this.#lastSequence = sequence;
      if (this.#inserted > 0) {
        o.sequence_number = sequence + this.#inserted;
        changed = true;
      }
    }
    const out = before + (changed ? withData(ev, JSON.stringify(obj)) : ev.raw);
    const only = reading.slots.length === 1 ? reading.slots[0]! : undefined;
    if (only && !framed && before === '' && sequence === undefined && this.#templates && !reading.ends(only.key)) {
      this.#template = DeltaTemplate.learn(ev.data, obj, only, texts[0]!);
    }
    return out;
  }

  /**
   * Whether events may be matched against a frame: not when json_paths (their filters may read the
   * delta) or selectors (code sluice cannot reason about) could treat the same frame differently.
   */
  get #templates(): boolean {
    return this.#profile.jsonPaths.length === 0 && this.#profile.selectors.length === 0;
  }

  #channel(key: string, flush: OpenChannel['flush']): OpenChannel {
    let open = this.#channels.get(key);
    if (open === undefined) {
      if (this.#channels.size >= MAX_CHANNELS) {
        throw new SluiceError('ERR_MASKING_BLOCKED', { message: `The stream opened more than ${MAX_CHANNELS} text channels` });
      }
      open = { channel: new TextChannel(this.#profile.text, this.#counter), flush };
      this.#channels.set(key, open);
    } else {
      // The latest delta is the best model for the flushed one (same ids, same indices).
      open.flush = flush;
    }
    return open;
  }

  /**
   * Ends the channels `which` selects: each one's held-back text leaves as one more delta event. `sequence`
   * is that of the event about to follow (they take its number, and it and all later ones move up).
   */
  #flushWhere(which: (key: string) => boolean, sequence: number | undefined): string {
    let out = '';
    for (const [key, open] of this.#channels) {
      if (!which(key)) continue;
      this.#channels.delete(key);
      const rest = open.channel.end();
      if (rest === '') continue;
      const { event, data } = open.flush(rest);
      if ('sequence_number' in data) {
        const base = sequence ?? (this.#lastSequence ?? 0) + 1;
        data.sequence_number = base + this.#inserted;
      }
      this.#inserted++;
      out += newEvent(event, JSON.stringify(data), this.#eol);
    }
    return out;
  }

  #refuseUnknown(what: string): void {
    if (this.#profile.unknownStream === 'block') {
      throw new SluiceError('ERR_MASKING_BLOCKED', {
        message: `The upstream stream sent ${what}; the masking profile refuses such streams (unknown_stream: block)`,
      });
    }
  }
}
