import type { MaskingCounter } from './masking-summary.js';
import { replacementFor, type ReplacementOptions } from './replacement.js';
import { CONTEXT_CHARS, type RuleMatch, type TextRule } from './text-rule.js';

/** A text rule with the style its profile writes replacements in. */
export interface MaskEntry {
  readonly rule: TextRule;
  readonly replacement: ReplacementOptions;
}

/** What `maskFrom` decided: the masked text of `[from, next)`. */
export interface MaskStep {
  readonly output: string;
  readonly next: number;
}

interface Candidate extends RuleMatch {
  readonly order: number;
}

/** Applies a profile's text rules; stateless, so one instance serves every exchange. */
export class TextMasker {
  readonly #entries: readonly MaskEntry[];
  readonly #allow: ReadonlySet<string>;

  constructor(entries: readonly MaskEntry[], allow: ReadonlySet<string>) {
    this.#entries = entries;
    this.#allow = allow;
  }

  /** Whether any rule is configured (a profile of JSON rules only has none). */
  get empty(): boolean {
    return this.#entries.length === 0;
  }

  /** Masks a complete text. */
  mask(text: string, counter: MaskingCounter): string {
    return this.maskFrom(text, 0, true, counter).output;
  }

  /**
   * Masks `text` from `from` up to the point where every match is decided (all of it when `final`).
   * Characters before `from` are context only (look-behinds); `next` is where the caller resumes.
   */
  maskFrom(text: string, from: number, final: boolean, counter: MaskingCounter): MaskStep {
    let cut = text.length;
    if (!final) {
      for (const e of this.#entries) {
        const h = e.rule.holdFrom(text, from);
        if (h < cut) cut = h;
      }
    }
    if (cut <= from) return { output: '', next: from };
    const candidates: Candidate[] = [];
    this.#entries.forEach((e, order) => {
      e.rule.scan(text, from, (m) => {
        // Decided by where the whole match starts: a JSON key's value is decided once its key is.
        if ((m.anchor ?? m.start) < cut) candidates.push({ ...m, order });
      });
    });
    if (candidates.length === 0) return { output: text.slice(from, cut), next: cut };
    // Leftmost wins, then the longest, then the rule listed first; overlapped candidates are dropped.
    candidates.sort((a, b) => a.start - b.start || b.end - a.end || a.order - b.order);
    let out = '';
    let pos = from;
    for (const c of candidates) {
      if (c.start < pos) continue;
      out += text.slice(pos, c.start);
      if (this.#allow.has(c.value.toLowerCase())) {
        // An allowed value shields its span from every other rule too.
        out += c.value;
      } else {
        const { rule, replacement } = this.#entries[c.order]!;
        out += replacement.style === 'redact' && rule.fixed !== undefined ? rule.fixed : replacementFor(c.value, rule.label, replacement);
        counter.add(rule.entity, rule.rule);
      }
      pos = c.end;
    }
    const next = Math.max(pos, cut);
    out += text.slice(pos, next);
    return { output: out, next };
  }
}

/**
 * One streamed text (a choice's content, a tool call's arguments, a text body): each push returns what
 * may be sent now, holding back only the tail that could still begin a match; `end` flushes the rest.
 */
export class TextChannel {
  readonly #masker: TextMasker;
  readonly #counter: MaskingCounter;
  /** Up to CONTEXT_CHARS already sent, then the held-back text. */
  #buf = '';
  #from = 0;

  constructor(masker: TextMasker, counter: MaskingCounter) {
    this.#masker = masker;
    this.#counter = counter;
  }

  /** Characters held back right now (what a benchmark of time-to-first-token wants to see). */
  get held(): number {
    return this.#buf.length - this.#from;
  }

  push(delta: string): string {
    if (delta === '') return '';
    this.#buf += delta;
    const { output, next } = this.#masker.maskFrom(this.#buf, this.#from, false, this.#counter);
    const keep = Math.max(0, next - CONTEXT_CHARS);
    this.#buf = this.#buf.slice(keep);
    this.#from = next - keep;
    return output;
  }

  end(): string {
    if (this.held === 0) return '';
    const { output } = this.#masker.maskFrom(this.#buf, this.#from, true, this.#counter);
    this.#buf = '';
    this.#from = 0;
    return output;
  }
}
