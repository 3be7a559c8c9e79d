import type { MaskingCounter } from './masking-summary.js';
import type { TextMasker } from './text-masker.js';
import { CONTEXT_CHARS } from './text-rule.js';

/** One piece of a channel's text where it was found: a string of one event, one token of a logprobs list. */
export interface Fragment<T> {
  readonly text: string;
  readonly ref: T;
}

/** A fragment whose masked text is decided. */
export interface DecidedFragment<T> extends Fragment<T> {
  /** What the fragment becomes; the outputs of a channel's fragments, joined, are the masked channel text. */
  readonly out: string;
}

interface Pending<T> {
  readonly text: string;
  readonly ref: T;
  /** Offsets in the channel's whole text. */
  readonly start: number;
  readonly end: number;
  out: string;
}

/**
 * A streamed text that arrives in fragments which must stay where they are: strings of events of an
 * unknown shape, the tokens of a logprobs list. The joined text is masked with the same hold-back as
 * any stream; each fragment is decided once the masker has decided all of its characters. A fragment
 * keeps the characters masking left alone; a replacement goes whole to the fragment where the replaced
 * span starts and the span's other fragments become empty, so no fragment carries part of a value and
 * the fragments still spell the masked text.
 */
export class FragmentChannel<T> {
  readonly #masker: TextMasker;
  readonly #counter: MaskingCounter;
  /** Up to CONTEXT_CHARS already decided, then the undecided text. */
  #buf = '';
  /** Offset of #buf[0] in the channel's whole text. */
  #base = 0;
  /** Where the undecided text starts in #buf. */
  #from = 0;
  /** Fragments not yet decided, in order. */
  #pending: Pending<T>[] = [];

  constructor(masker: TextMasker, counter: MaskingCounter) {
    this.#masker = masker;
    this.#counter = counter;
  }

  /** Fragments waiting for a decision. */
  get waiting(): number {
    return this.#pending.length;
  }

  /** Adds fragments; returns those decided now (earlier ones included), in order. */
  push(fragments: readonly Fragment<T>[]): DecidedFragment<T>[] {
    for (const f of fragments) {
      const start = this.#base + this.#buf.length;
      this.#buf += f.text;
      this.#pending.push({ text: f.text, ref: f.ref, start, end: start + f.text.length, out: '' });
    }
    return this.#decide(false);
  }

  /** Decides every fragment: the text has ended. */
  end(): DecidedFragment<T>[] {
    return this.#decide(true);
  }

  #decide(final: boolean): DecidedFragment<T>[] {
    if (this.#pending.length === 0) return [];
    const from = this.#from;
    const { output, next } = this.#masker.maskFrom(this.#buf, from, final, this.#counter);
    if (next > from) this.#distribute(output, from, next);
    const decidedTo = this.#base + next;
    let n = 0;
    while (n < this.#pending.length && this.#pending[n]!.end <= decidedTo) n++;
    const decided = this.#pending.splice(0, n);
    const keep = Math.max(0, next - CONTEXT_CHARS);
    this.#buf = this.#buf.slice(keep);
    this.#base += keep;
    this.#from = next - keep;
    return decided;
  }

  /** Shares the masked text of `[from, next)` of #buf out among the fragments that hold those characters. */
  #distribute(output: string, from: number, next: number): void {
    const input = this.#buf.slice(from, next);
    const base = this.#base;
    if (output === input) {
      for (const p of this.#pending) {
        const lo = Math.max(p.start - base, from);
        const hi = Math.min(p.end - base, next);
        if (lo >= next) break;
        if (hi > lo) p.out += this.#buf.slice(lo, hi);
      }
      return;
    }
    // Masking only replaces spans, so what differs lies between the longest common prefix and suffix.
    const most = Math.min(input.length, output.length);
    let prefix = 0;
    while (prefix < most && input.charCodeAt(prefix) === output.charCodeAt(prefix)) prefix++;
    let suffix = 0;
    while (suffix < most - prefix && input.charCodeAt(input.length - 1 - suffix) === output.charCodeAt(output.length - 1 - suffix)) suffix++;
    const changedFrom = from + prefix;
    const changedTo = next - suffix;
    const replacement = output.slice(prefix, output.length - suffix);
    let owner: Pending<T> | undefined;
    let last: Pending<T> | undefined;
    for (const p of this.#pending) {
      const lo = Math.max(p.start - base, from);
      const hi = Math.min(p.end - base, next);
      if (lo >= next) break;
      if (hi <= lo) continue;
      last = p;
      if (lo < changedFrom) p.out += this.#buf.slice(lo, Math.min(hi, changedFrom));
      if (owner === undefined && hi > changedFrom) {
        owner = p;
        p.out += replacement;
      }
      if (hi > changedTo) p.out += this.#buf.slice(Math.max(lo, changedTo), hi);
    }
    // Only an insertion at the very end of the region has no character to own it.
    if (owner === undefined && last !== undefined) last.out += replacement;
  }
}
