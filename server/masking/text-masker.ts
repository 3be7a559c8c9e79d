import type { MaskingCounter } from './masking-summary.js';
import { replacementFor, type ReplacementOptions } from './replacement.js';
import { CONTEXT_CHARS, type RuleCandidate, type RuleCursor, type TextRule } from './text-rule.js';

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

/** Applies a profile's text rules; stateless, so one instance serves every exchange. */
export class TextMasker {
  readonly #entries: readonly MaskEntry[];
  readonly #allow: ReadonlySet<string>;
  /** One search per distance of needles, when every rule has one; null when some rule has none. */
  readonly #needles: readonly { readonly pattern: RegExp; readonly before: number }[] | null;
  /** Each rule's own needle (null: none), so a rule whose needle is absent is not run at all. */
  readonly #ownNeedles: readonly (RegExp | null)[];

  constructor(entries: readonly MaskEntry[], allow: ReadonlySet<string>) {
    this.#entries = entries;
    this.#allow = allow;
    this.#needles = needleSearches(entries.map((e) => e.rule));
    this.#ownNeedles = entries.map(({ rule }) => rule.contains?.pattern ?? null);
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
    if (!this.#mayMatch(text, from)) return { output: text.slice(from, cut), next: cut };
    // Rules with a match still to come, in the order they are listed.
    const live: { order: number; cursor: RuleCursor }[] = [];
    this.#entries.forEach((e, order) => {
      const needle = this.#ownNeedles[order];
      if (needle) {
        needle.lastIndex = Math.max(0, from - e.rule.contains!.before);
        if (!needle.test(text)) return;
      }
      live.push({ order, cursor: e.rule.cursor(text, from) });
    });
    let out = '';
    let pos = from;
    // Every span a rule finds is masked; spans that overlap are masked as one, named after the first.
    let group: { start: number; end: number; order: number; allowed: boolean } | null = null;
    const emit = (g: NonNullable<typeof group>): void => {
      out += text.slice(pos, g.start);
      const value = text.slice(g.start, g.end);
      if (g.allowed) {
        out += value;
      } else {
        const { rule, replacement } = this.#entries[g.order]!;
        out += replacement.style === 'redact' && rule.fixed !== undefined ? rule.fixed : replacementFor(value, rule.label, replacement);
        counter.add(rule.entity, rule.rule);
      }
      pos = g.end;
    };
    for (;;) {
      // The front candidate of all rules: leftmost, then longest, then the rule listed first.
      let best: RuleCandidate | null = null;
      let owner: (typeof live)[number] | undefined;
      let kept = 0;
      for (const rule of live) {
        const c = rule.cursor.peek();
        // Decided by where the whole match starts: a JSON key's value is decided once its key is. A
        // cursor out of matches, or past the cut, stays so: it leaves the live list.
        if (c === null || c.anchor >= cut) continue;
        live[kept++] = rule;
        if (best === null || c.start < best.start || (c.start === best.start && c.end > best.end)) {
          best = c;
          owner = rule;
        }
      }
      live.length = kept;
      if (best === null || owner === undefined) break;
      const inGroup = group !== null && best.start < group.end;
      if (inGroup && best.end <= group!.end) {
        // Already masked whatever it is: no check needed.
        owner.cursor.skip();
        continue;
      }
      if (!best.checked) {
        owner.cursor.check();
        continue;
      }
      owner.cursor.skip();
      const allowed = this.#allow.has(best.value.toLowerCase());
      if (inGroup) {
        // Reaches past the group: the group grows, and is left alone only if both are allowed values.
        group!.end = best.end;
        group!.allowed &&= allowed;
      } else {
        if (group !== null) emit(group);
        group = { start: best.start, end: best.end, order: owner.order, allowed };
      }
    }
    if (group !== null) emit(group);
    const next = Math.max(pos, cut);
    out += text.slice(pos, next);
    return { output: out, next };
  }

  /** False when no rule's needle is in `text` from `from`: no rule can match there. */
  #mayMatch(text: string, from: number): boolean {
    if (this.#needles === null) return true;
    for (const { pattern, before } of this.#needles) {
      pattern.lastIndex = Math.max(0, from - before);
      if (pattern.test(text)) return true;
    }
    return false;
  }
}

/** The rules' needles as one search per look-behind distance; null when a rule has no needle. */
function needleSearches(rules: readonly TextRule[]): { pattern: RegExp; before: number }[] | null {
  const byDistance = new Map<number, RegExp[]>();
  for (const rule of rules) {
    if (rule.contains === undefined) return null;
    const patterns = byDistance.get(rule.contains.before) ?? [];
    patterns.push(rule.contains.pattern);
    byDistance.set(rule.contains.before, patterns);
  }
  return [...byDistance].map(([before, patterns]) => {
    const sources = [...new Set(patterns.map((p) => `(?:${p.source})`))].join('|');
    // One case-insensitive needle makes the whole search so: it then finds a superset, never less.
    return { pattern: new RegExp(sources, patterns.some((p) => p.ignoreCase) ? 'gi' : 'g'), before };
  });
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
