import { SluiceError } from '../../shared/errors.js';
import type { CompiledProfile } from './compiled-profile.js';
import { DeltaTemplate } from './delta-template.js';
import { maskJson } from './json-masker.js';
import { maskKeysAndNumbers } from './json-token-masker.js';
import { maskLogprobLists, mayHoldLogprobs, stripLogprobs, TokenChannel } from './logprob-tokens.js';
import type { MaskingCounter } from './masking-summary.js';
import { collectFragments, MAX_HELD_RECORDS, PathChannels, type ChannelEvent, type FieldFragment } from './path-channels.js';
import { ReleaseQueue } from './release-queue.js';
import { readShape, type FlushEvent, type ShapeReading } from './stream-shapes.js';
import { TextChannel } from './text-masker.js';

/** Bound on open text channels of one stream (choices × fields × tool calls, content blocks, paths). */
const MAX_CHANNELS = 1024;

/** Object keys and SSE field values at most this long are remembered as clean. */
const CLEAN_MAX_LENGTH = 256;
const CLEAN_MAX_ENTRIES = 1024;

type Json = Record<string, unknown>;

/** How a stream's records (SSE events, NDJSON lines) are written; R is the framer's record. */
export interface RecordFormat<R> {
  /** The exact text of the record, sent when masking leaves it alone. */
  raw(rec: R): string;
  /**
   * The record with its payload replaced. `oneLine`: the caller knows the payload holds no line break
   * (it is JSON text), which spares a search of it.
   */
  withData(rec: R, data: string, oneLine?: boolean): string;
  /** A record of the stream's own (a flushed hold-back): `event` is an SSE event name. */
  newRecord(event: string | undefined, data: string): string;
}

type OpenChannel =
  | { readonly tokens: false; readonly channel: TextChannel; flush: (text: string) => FlushEvent }
  | { readonly tokens: true; readonly channel: TokenChannel; flush: (entries: readonly Json[]) => FlushEvent };

/**
 * Masks the records of a stream, SSE or NDJSON alike. Known deltas (OpenAI chat, completions and
 * Responses, Anthropic, Ollama) go through one channel per choice, field, tool call or block, so PII
 * split across records is caught while each record still leaves at once, minus the held-back tail;
 * that tail is flushed as an extra record of the same shape just before the channel ends. Logprobs
 * lists streamed beside a delta are a channel of tokens. Records of any other shape are masked channel
 * by channel, per JSON path, and held until their strings are decided; plain-text payloads form one
 * channel. Every other string is masked in place.
 */
export class StreamRecordMasker<R> {
  readonly #profile: CompiledProfile;
  readonly #counter: MaskingCounter;
  readonly #format: RecordFormat<R>;
  readonly #channels = new Map<string, OpenChannel>();
  readonly #paths: PathChannels;
  readonly #queue = new ReleaseQueue();
  /** Strings of this stream's records the text rules left alone (ids, model, object names). */
  readonly #clean = new Set<string>();
  /** The frame of the last plain delta record: the next ones usually differ only in their delta. */
  #template: DeltaTemplate | null = null;
  /** Records inserted so far: later `sequence_number`s (OpenAI Responses) move up by as many. */
  #inserted = 0;
  #lastSequence: number | undefined;
  /** Records seen, for the gaps of unknown-shape channels. */
  #seen = 0;

  constructor(profile: CompiledProfile, counter: MaskingCounter, format: RecordFormat<R>) {
    this.#profile = profile;
    this.#counter = counter;
    this.#format = format;
    this.#paths = new PathChannels(profile.text, counter, MAX_CHANNELS);
  }

  /**
   * What may be sent after `rec`, whose payload is `data`: the record, masked, unless it waits behind a
   * held record or is held itself.
   */
  record(rec: R, data: string): string {
    const template = this.#template;
    const delta = template?.match(data);
    if (template && delta !== undefined) return this.recordDelta(rec, delta);
    this.#seen++;
    let out = '';
    if (this.#paths.size > 0) {
      this.#paths.endIdle(this.#seen);
      out = this.#queue.release();
    }
    this.#template = null;
    let obj: unknown;
    try {
      obj = JSON.parse(data);
    } catch {
      obj = undefined;
    }
    // A number, true, false or null is text to a client that reads the data as text ("1" ends a card
    // number that the text before it began): it belongs to the plain-text channel too.
    if (obj === undefined || (typeof obj !== 'object' && typeof obj !== 'string') || obj === null) {
      this.#refuseUnknown('a record whose data is not JSON');
      return out + this.#plainText(rec, data);
    }
    const stripped = this.#profile.logprobs === 'strip' && mayHoldLogprobs(data) && stripLogprobs(obj);
    const reading = readShape(obj);
    if (reading.kind === 'unknown') {
      this.#refuseUnknown('a record of unknown shape');
      return out + this.#unknown(rec, obj, stripped);
    }
    return out + this.#known(rec, data, obj as Json, reading, stripped);
  }

  /**
   * The frame the next record is read against (see DeltaTemplate), or null: a caller that finds the
   * frame in a record itself (in its bytes, before decoding them) passes the delta to `recordDelta`.
   */
  get template(): DeltaTemplate | null {
    return this.#template;
  }

  /** `record` of a record that is the current template's frame around the JSON string of `delta`. */
  recordDelta(rec: R, delta: string): string {
    const template = this.#template!;
    this.#seen++;
    let out = '';
    if (this.#paths.size > 0) {
      this.#paths.endIdle(this.#seen);
      out = this.#queue.release();
    }
    const masked = this.#text(template.slot.key, template.slot.flush).channel.push(delta);
    return out + this.#queue.send(masked === delta ? this.#format.raw(rec) : this.#format.withData(rec, template.render(masked), true));
  }

  /** Passes a record masking does not touch (`[DONE]`), in its place in the order. */
  pass(raw: string): string {
    return this.#queue.send(raw);
  }

  /** Ends every channel: all held text leaves, known channels' tails as records of their own. */
  flushAll(): string {
    this.#paths.endAll();
    return this.#queue.release() + this.#flushWhere(() => true, undefined);
  }

  #known(rec: R, data: string, o: Json, reading: ShapeReading, stripped: boolean): string {
    const sequence = typeof o.sequence_number === 'number' ? o.sequence_number : undefined;
    const slotKeys = new Set(reading.slots.map((s) => s.key));
    for (const t of reading.tokens) slotKeys.add(t.key);
    const before = this.#flushWhere((k) => reading.ends(k) && !slotKeys.has(k), sequence);

    // Deltas and streamed token lists are masked by their channel; blank them so the generic pass leaves them alone.
    const texts = reading.slots.map((s) => s.text);
    for (const s of reading.slots) s.set('');
    const lists = reading.tokens.map((t) => t.entries);
    for (const t of reading.tokens) t.set([]);
    let framed = stripped;
    // Whole lists (a `.done` event's, a final response's) are channels of their own, masked at once.
    if (this.#profile.logprobs === 'mask' && mayHoldLogprobs(data)) framed = maskLogprobLists(o, this.#profile.text, this.#counter) || framed;
    framed = maskJson(o, this.#profile, this.#counter, { clean: this.#clean }).changed || framed;
    // Keys and numbers are read by the client too (a card as a number, an address as a key).
    if (this.#profile.text.mayMatchIn(data)) framed = maskKeysAndNumbers(o, this.#profile, this.#counter) || framed;
    let changed = framed;
    reading.slots.forEach((s, i) => {
      const open = this.#text(s.key, s.flush);
      let masked = open.channel.push(texts[i]!);
      if (reading.ends(s.key)) {
        masked += open.channel.end();
        this.#channels.delete(s.key);
      }
      if (masked !== texts[i]) changed = true;
      s.set(masked);
    });
    reading.tokens.forEach((t, i) => {
      const open = this.#tokens(t.key, t.flush);
      let entries = open.channel.push(lists[i]!);
      if (reading.ends(t.key)) {
        entries = entries.concat(open.channel.end());
        this.#channels.delete(t.key);
      }
      // Tokens move between records with the hold-back: the record is written anew.
      changed = true;
      t.set(entries);
    });
    if (sequence !== undefined) {
      this.#lastSequence = sequence;
      if (this.#inserted > 0) {
        o.sequence_number = sequence + this.#inserted;
        changed = true;
      }
    }
    const text = changed ? this.#format.withData(rec, JSON.stringify(o), true) : this.#format.raw(rec);
    const only = reading.slots.length === 1 && reading.tokens.length === 0 ? reading.slots[0]! : undefined;
    if (only && !framed && before === '' && sequence === undefined && this.#templates && !reading.ends(only.key)) {
      this.#template = DeltaTemplate.learn(data, o, only, texts[0]!);
    }
    return this.#queue.send(before + text);
  }

  /** A record of a shape sluice does not know: every string on the channel of its path, the record held until decided. */
  #unknown(rec: R, obj: unknown, stripped: boolean): string {
    const holder: Json = { root: obj };
    const { fragments, renamed } = collectFragments(holder, this.#profile.jsonKeys, (k) => this.#maskClean(k));
    const result = maskJson(holder.root, this.#profile, this.#counter, { clean: this.#clean });
    holder.root = result.value;
    const keyed = maskKeysAndNumbers(holder.root, this.#profile, this.#counter);
    const event: ChannelEvent = {
      pending: 0,
      changed: stripped || renamed || result.changed || keyed,
      render: () => (event.changed ? this.#format.withData(rec, JSON.stringify(holder.root), true) : this.#format.raw(rec)),
    };
    // A string a json_paths rule or a selector replaced meanwhile is decided already.
    const live: FieldFragment[] = fragments.filter((f) => f.blank());
    this.#paths.add(event, live, this.#seen);
    return this.#queue.add(event) + this.#bound();
  }

  /** A record whose payload is text: one channel for all of them. */
  #plainText(rec: R, text: string): string {
    let masked = text;
    const event: ChannelEvent = { pending: 0, changed: false, render: () => (event.changed ? this.#format.withData(rec, masked) : this.#format.raw(rec)) };
    const fragment: FieldFragment = {
      key: 'text',
      text,
      set: (out) => {
        masked = out;
      },
      blank: () => true,
    };
    this.#paths.add(event, [fragment], this.#seen);
    return this.#queue.add(event) + this.#bound();
  }

  /** Held records stay bounded: past MAX_HELD_RECORDS, every channel's held text is decided as complete. */
  #bound(): string {
    if (this.#queue.length <= MAX_HELD_RECORDS) return '';
    this.#paths.endAll();
    return this.#queue.release();
  }

  /** A short string through the text rules, remembered when clean (keys and field values repeat). */
  #maskClean(value: string): string {
    if ((value.length <= CLEAN_MAX_LENGTH && this.#clean.has(value)) || this.#profile.text.empty) return value;
    const masked = this.#profile.text.mask(value, this.#counter);
    if (masked === value && value.length <= CLEAN_MAX_LENGTH && this.#clean.size < CLEAN_MAX_ENTRIES) this.#clean.add(value);
    return masked;
  }

  /** A field value or comment of the stream's framing, masked on its own. */
  maskFieldValue(value: string): string {
    return this.#maskClean(value);
  }

  /**
   * Whether records may be matched against a frame: not when json_paths (their filters may read the
   * delta) or selectors (code sluice cannot reason about) could treat the same frame differently.
   */
  get #templates(): boolean {
    return this.#profile.jsonPaths.length === 0 && this.#profile.selectors.length === 0;
  }

  #text(key: string, flush: (text: string) => FlushEvent): OpenChannel & { tokens: false } {
    const open = this.#channels.get(key);
    if (open !== undefined && !open.tokens) {
      // The latest delta is the best model for the flushed one (same ids, same indices).
      open.flush = flush;
      return open;
    }
    this.#roomFor(key);
    const created = { tokens: false as const, channel: new TextChannel(this.#profile.text, this.#counter), flush };
    this.#channels.set(key, created);
    return created;
  }

  #tokens(key: string, flush: (entries: readonly Json[]) => FlushEvent): OpenChannel & { tokens: true } {
    const open = this.#channels.get(key);
    if (open !== undefined && open.tokens) {
      open.flush = flush;
      return open;
    }
    this.#roomFor(key);
    const created = { tokens: true as const, channel: new TokenChannel(this.#profile.text, this.#counter), flush };
    this.#channels.set(key, created);
    return created;
  }

  #roomFor(key: string): void {
    if (!this.#channels.has(key) && this.#channels.size >= MAX_CHANNELS) {
      throw new SluiceError('ERR_MASKING_BLOCKED', { message: `The stream opened more than ${MAX_CHANNELS} text channels` });
    }
  }

  /**
   * Ends the channels `which` selects: each one's held-back text leaves as one more record. `sequence`
   * is that of the record about to follow (they take its number, and it and all later ones move up).
   */
  #flushWhere(which: (key: string) => boolean, sequence: number | undefined): string {
    let out = '';
    for (const [key, open] of this.#channels) {
      if (!which(key)) continue;
      this.#channels.delete(key);
      let flushed: FlushEvent;
      if (open.tokens) {
        const rest = open.channel.end();
        if (rest.length === 0) continue;
        flushed = open.flush(rest);
      } else {
        const rest = open.channel.end();
        if (rest === '') continue;
        flushed = open.flush(rest);
      }
      const { event, data } = flushed;
      if ('sequence_number' in data) {
        const base = sequence ?? (this.#lastSequence ?? 0) + 1;
        data.sequence_number = base + this.#inserted;
      }
      this.#inserted++;
      out += this.#format.newRecord(event, JSON.stringify(data));
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
