import { StringDecoder } from 'node:string_decoder';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import { LogprobsJsonMasker } from './logprobs-json-masker.js';
import type { MaskingCounter } from './masking-summary.js';
import { isDataLine, newEvent, oneLineEvent, SseFramer, withData, withLines, type SseEvent } from './sse-framer.js';
import { StreamRecordMasker } from './stream-record-masker.js';
import { bodyStart, LeadingBom } from './stream-start.js';

/** How the common event is written: one data line, a space after the colon, and a blank line. */
const DATA_PREFIX = 'data: ';
const ONE_LINE_END = '\n\n';

/**
 * Masks a text/event-stream body event by event: each event's data through the stream's channels
 * (StreamRecordMasker), and every other line too (`event:`, `id:`, comments, fields no client reads),
 * since each reaches the caller and the recording. A body that is plainly not a stream (it opens with
 * `{` or `[`: an error object sent with the stream's content type) is masked as JSON. One leading BOM
 * is kept but not read as part of the first field, as clients do.
 */
export class SseMasker implements BodyMasker {
  readonly #profile: CompiledProfile;
  readonly #counter: MaskingCounter;
  readonly #decoder = new StringDecoder('utf8');
  readonly #framer: SseFramer;
  readonly #records: StreamRecordMasker<SseEvent>;
  /** Set once the body is known to be JSON rather than a stream. */
  #json: BodyMasker | null = null;
  /** Bytes held until the first one that tells a stream from a JSON body; null once told. */
  #start: Buffer | null = Buffer.alloc(0);
  readonly #bom = new LeadingBom();
  #eol = '\n';

  constructor(profile: CompiledProfile, counter: MaskingCounter) {
    this.#profile = profile;
    this.#counter = counter;
    this.#framer = new SseFramer({ maxEvent: profile.maxJsonBody, maxLine: profile.maxLine });
    this.#records = new StreamRecordMasker<SseEvent>(profile, counter, {
      raw: (ev) => ev.raw,
      withData,
      newRecord: (event, data) => newEvent(event, data, this.#eol),
    });
  }

  write(chunk: Buffer): string {
    if (this.#json !== null) return this.#json.write(chunk).toString();
    if (this.#start !== null) {
      const held = this.#start.length === 0 ? chunk : Buffer.concat([this.#start, chunk]);
      const start = bodyStart(held);
      if (start === 'undecided' && held.length <= this.#profile.maxLine) {
        this.#start = held;
        return '';
      }
      this.#start = null;
      if (start === 'json') {
        this.#json = new LogprobsJsonMasker(this.#profile, this.#counter);
        return this.#json.write(held).toString();
      }
      return this.#text(this.#decoder.write(held));
    }
    return this.#text(this.#decoder.write(chunk));
  }

  end(): string {
    // Text either way: the JSON masker's bytes are the stream's own UTF-8 when it changed nothing.
    if (this.#json !== null) return this.#json.end().toString();
    let out = '';
    if (this.#start !== null) {
      out = this.#text(this.#decoder.write(this.#start));
      this.#start = null;
    }
    out += this.#text(this.#decoder.end());
    const last = this.#framer.end();
    if (last !== null) out += this.#event(last);
    return out + this.#records.flushAll();
  }

  #text(text: string): string {
    let out = '';
    if (!this.#bom.taken) {
      const { bom, rest } = this.#bom.take(text);
      out = bom;
      text = rest;
    }
    const framed = out === '' ? this.#templated(text) : null;
    if (framed !== null) return framed;
    const single = this.#framer.single(text);
    if (single !== null) return out + this.#event(single);
    for (const ev of this.#framer.push(text)) out += this.#event(ev);
    return out;
  }

  /**
   * The common chunk, one event `data: {…}\n\n` of the delta frame the stream repeats (see
   * DeltaTemplate), masked as the framer and the record masker would mask it, with one reading of its
   * text: null for any other chunk.
   */
  #templated(text: string): string | null {
    const template = this.#records.template;
    if (template === null || !this.#framer.takesWhole(text)) return null;
    const delta = template.matchWrapped(text, DATA_PREFIX, ONE_LINE_END);
    if (delta === undefined) return null;
    this.#eol = '\n';
    return this.#records.recordDelta(oneLineEvent(text), delta);
  }

  #event(received: SseEvent): string {
    const ev = received.dataOnly ? received : this.#otherLines(received);
    if (ev.data === undefined) return this.#records.pass(ev.raw);
    this.#eol = ev.eol;
    if (ev.data.length < 16 && ev.data.trim() === '[DONE]') return this.#records.flushAll() + this.#records.pass(ev.raw);
    return this.#records.record(ev, ev.data);
  }

  /** The event with every line but its data masked: field values and comments each on their own, anything else whole. */
  #otherLines(ev: SseEvent): SseEvent {
    let lines: string[] | null = null;
    ev.lines.forEach((line, i) => {
      if (isDataLine(line)) return;
      const colon = line.indexOf(':');
      const known = colon !== -1 && /^(?:|event|id|retry)$/.test(line.slice(0, colon));
      const masked = known ? line.slice(0, colon + 1) + this.#records.maskFieldValue(line.slice(colon + 1)) : this.#records.maskFieldValue(line);
      if (masked === line) return;
      lines ??= [...ev.lines];
      lines[i] = masked;
    });
    return lines === null ? ev : withLines(ev, lines);
  }
}
