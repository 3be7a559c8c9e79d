import { SluiceError } from '../../shared/errors.js';
import { FragmentChannel, type DecidedFragment } from './fragment-channel.js';
import { nextContext, rewriteToken, tokenField } from './logprob-tokens.js';
import type { MaskingCounter } from './masking-summary.js';
import type { HeldEvent } from './release-queue.js';
import type { TextMasker } from './text-masker.js';

type Json = Record<string, unknown>;

/**
 * Records (events, lines) a channel of an unknown shape may be absent from before its held text is
 * decided as complete. Values of such streams are split across consecutive records, one token each;
 * a field seen once (a title, an id) must not hold the stream back for long.
 */
export const MAX_GAP = 8;

/** Records held at most while channels wait; past it every channel's held text is decided as complete. */
export const MAX_HELD_RECORDS = 1024;

/** How deep a document is searched for strings. */
const MAX_DEPTH = 64;

/** A held event whose fragments may change it. */
export interface ChannelEvent extends HeldEvent {
  /** Set when a fragment's masked text differs from what was received. */
  changed: boolean;
}

/** One string of an event on its channel, blanked until decided. */
export interface FieldFragment {
  /** The channel: the string's JSON path (array indices of objects kept, strings of one array joined). */
  readonly key: string;
  readonly text: string;
  /** Writes the masked text back where the string was. */
  set(out: string): void;
  /** Whether the string is still blank: false when a `json_paths` rule or a selector replaced it meanwhile. */
  blank(): boolean;
  /** A token of a logprobs list: its alternatives are checked after the tokens before it. */
  readonly token?: { readonly entry: Json; readonly field: 'token' | 'text' };
}

interface Ref {
  readonly event: ChannelEvent;
  readonly fragment: FieldFragment;
  readonly context: string;
}

interface Open {
  readonly channel: FragmentChannel<Ref>;
  lastSeen: number;
  /** The received text of its last tokens: the context their successors' alternatives are checked in. */
  context: string;
}

/**
 * Streams of a shape sluice does not know, masked channel by channel: every string of every event is
 * a fragment of the channel of its JSON path, so a value split across events is found in the text the
 * channel spells. Fragments stay in their events (sluice cannot tell a delta from an id there), and an
 * event is held until all of its fragments are decided.
 */
export class PathChannels {
  readonly #masker: TextMasker;
  readonly #counter: MaskingCounter;
  readonly #maxChannels: number;
  readonly #open = new Map<string, Open>();

  constructor(masker: TextMasker, counter: MaskingCounter, maxChannels: number) {
    this.#masker = masker;
    this.#counter = counter;
    this.#maxChannels = maxChannels;
  }

  /** Whether any channel is open. */
  get size(): number {
    return this.#open.size;
  }

  /** Puts the fragments of `event` (record number `seen`) on their channels and decides what it can. */
  add(event: ChannelEvent, fragments: readonly FieldFragment[], seen: number): void {
    event.pending += fragments.length;
    const byKey = new Map<string, FieldFragment[]>();
    for (const f of fragments) {
      const list = byKey.get(f.key);
      if (list === undefined) byKey.set(f.key, [f]);
      else list.push(f);
    }
    for (const [key, list] of byKey) {
      const open = this.#channel(key);
      open.lastSeen = seen;
      const pieces = list.map((fragment) => {
        const ref: Ref = { event, fragment, context: open.context };
        if (fragment.token !== undefined) open.context = nextContext(open.context, fragment.text);
        return { text: fragment.text, ref };
      });
      this.#apply(open.channel.push(pieces));
    }
  }

  /** Decides the channels absent for more than MAX_GAP records before record `seen`, and closes them. */
  endIdle(seen: number): void {
    for (const [key, open] of this.#open) {
      if (seen - open.lastSeen <= MAX_GAP) continue;
      this.#apply(open.channel.end());
      this.#open.delete(key);
    }
  }

  /** Decides every channel and closes it. */
  endAll(): void {
    for (const open of this.#open.values()) this.#apply(open.channel.end());
    this.#open.clear();
  }

  #channel(key: string): Open {
    let open = this.#open.get(key);
    if (open !== undefined) return open;
    if (this.#open.size >= this.#maxChannels) {
      // Channels waiting on nothing can go; only text still held needs its channel.
      for (const [k, o] of this.#open) if (o.channel.waiting === 0) this.#open.delete(k);
      if (this.#open.size >= this.#maxChannels) {
        throw new SluiceError('ERR_MASKING_BLOCKED', { message: `The stream opened more than ${this.#maxChannels} text channels` });
      }
    }
    open = { channel: new FragmentChannel<Ref>(this.#masker, this.#counter), lastSeen: 0, context: '' };
    this.#open.set(key, open);
    return open;
  }

  #apply(decided: readonly DecidedFragment<Ref>[]): void {
    for (const { ref, text, out } of decided) {
      const { fragment, event } = ref;
      if (fragment.token !== undefined) {
        const { entry, field } = fragment.token;
        entry[field] = text;
        const before = JSON.stringify(entry);
        rewriteToken(entry, field, out, ref.context, this.#masker);
        if (JSON.stringify(entry) !== before) event.changed = true;
      } else {
        fragment.set(out);
        if (out !== text) event.changed = true;
      }
      event.pending--;
    }
  }
}

/**
 * Every string of a parsed event as a fragment of its channel, blanked in place so a generic JSON pass
 * leaves them alone. Values under `json_keys` stay (that pass masks them whole), and object keys are
 * masked each on its own (`maskKey`), since a key can carry text too (a legacy logprobs `top_logprobs`).
 */
export function collectFragments(
  root: Json,
  jsonKeys: ReadonlyMap<string, unknown>,
  maskKey: (key: string) => string,
): { fragments: FieldFragment[]; renamed: boolean } {
  const fragments: FieldFragment[] = [];
  let renamed = false;

  const field = (holder: Json | unknown[], k: string | number, key: string): void => {
    const h = holder as Record<string | number, unknown>;
    const text = h[k] as string;
    h[k] = '';
    fragments.push({
      key,
      text,
      set: (out) => {
        h[k] = out;
      },
      blank: () => h[k] === '',
    });
  };

  const visit = (value: unknown, path: string, depth: number): void => {
    if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return;
    if (Array.isArray(value)) {
      const tf = tokenField(value);
      if (tf !== undefined) {
        for (const entry of value as Json[]) {
          const text = entry[tf] as string;
          entry[tf] = '';
          fragments.push({
            key: `${path}[*]`,
            text,
            set: (out) => {
              entry[tf] = out;
            },
            blank: () => entry[tf] === '',
            token: { entry, field: tf },
          });
        }
        return;
      }
      value.forEach((v, i) => {
        if (typeof v === 'string') field(value, i, `${path}[*]`);
        else visit(v, `${path}[${i}]`, depth + 1);
      });
      return;
    }
    const obj = value as Json;
    let keys = Object.keys(obj);
    const masked = keys.map(maskKey);
    if (masked.some((m, i) => m !== keys[i])) {
      renamed = true;
      const values = keys.map((k) => obj[k]);
      for (const k of keys) delete obj[k];
      masked.forEach((m, i) => {
        obj[m] = values[i];
      });
      keys = Object.keys(obj);
    }
    for (const k of keys) {
      if (jsonKeys.size > 0 && jsonKeys.has(k.toLowerCase())) continue;
      const v = obj[k];
      if (typeof v === 'string') field(obj, k, `${path}.${k}`);
      else visit(v, `${path}.${k}`, depth + 1);
    }
  };

  visit(root, '$', 0);
  return { fragments, renamed };
}
