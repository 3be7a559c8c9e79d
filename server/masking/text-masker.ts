import { setImmediate as nextTurn } from 'node:timers/promises';
import { HoldBack } from './hold-back.js';
import { NeedleSet } from './needle-set.js';
import type { MaskingCounter } from './masking-summary.js';
import { applySpans, needsView, normalisedView, originOf, viewIndexOf, type ViewSpan } from './normalised-view.js';
import { replacementFor, type ReplacementOptions } from './replacement.js';
import { CheckBudget, CONTEXT_CHARS, hasNeedle, type RuleCandidate, type RuleCursor, type TextRule } from './text-rule.js';
import { TextScan } from './text-scan.js';

/**
 * How long asynchronous masking runs before it gives the event loop a turn. A concurrent request needs
 * a dozen turns of the loop (socket, identity, recorder writes, upstream, answer) and waits this long at
 * each, so it must be small; a turn costs microseconds.
 */
export const MASK_TURN_MS = 1;

/**
 * Characters masked between two looks at the clock: at the slowest adversarial rate the rules allow
 * (a few MB/s) well under a millisecond, at the usual rate some tens of microseconds.
 */
export const MASK_STEP_CHARS = 1024;

/** Tells a long masking task when it has run MASK_TURN_MS and should give the event loop a turn. */
export class TurnClock {
  readonly #ms: number;
  #since = performance.now();

  constructor(ms = MASK_TURN_MS) {
    this.#ms = ms;
  }

  /** Whether the task has run its time since its last turn. */
  get due(): boolean {
    return performance.now() - this.#since >= this.#ms;
  }

  /** Gives the event loop a turn when one is due. */
  async pause(): Promise<void> {
    if (!this.due) return;
    await nextTurn();
    this.#since = performance.now();
  }
}

/** A text rule with the style its profile writes replacements in. */
export interface MaskEntry {
  readonly rule: TextRule;
  readonly replacement: ReplacementOptions;
}

/** How `maskFrom` works on a text besides the defaults. */
export interface MaskFromOptions {
  /** Collects each replaced span (the normalised view's own use). */
  readonly spans?: ViewSpan[];
  /** The caller knows the text is ASCII without a backslash: it reads as it is, no view is needed. */
  readonly plain?: boolean;
  /**
   * Writes each replacement as it goes into the output (and the spans): JSON string content, when the
   * text is the raw content of a JSON string without escapes, so the output needs no re-encoding.
   */
  readonly escape?: (replacement: string) => string;
}

/** What `maskFrom` decided: the masked text of `[from, next)`. */
export interface MaskStep {
  readonly output: string;
  readonly next: number;
}

/**
 * Applies a profile's text rules; one instance serves every exchange. Its only per-exchange state is
 * the budget of costly checks, kept by the exchange's counter and dropped with it.
 */
export class TextMasker {
  readonly #entries: readonly MaskEntry[];
  readonly #allow: ReadonlySet<string>;
  readonly #holdBack: HoldBack;
  /** One search per distance of needles, when every rule has one; null when some rule has none. */
  readonly #needles: readonly { readonly pattern: RegExp; readonly before: number }[] | null;
  /** The same needles as one table, for streams (see TextChannel); null when a rule's needle does not fit one. */
  readonly needleSet: NeedleSet | null;
  /** Scratch space of one pass over a short text: which rules have their needle in it (see NeedleSet.markLive). */
  readonly #marked: Uint8Array;
  /** Per entry, its replacement when that does not depend on the value (`[EMAIL]`, a regex rule's `replace`). */
  readonly #constant: readonly (string | undefined)[];

  constructor(entries: readonly MaskEntry[], allow: ReadonlySet<string>, searches?: TextMasker) {
    this.#entries = entries;
    this.#allow = allow;
    // The searches are built from the rules alone: `rebound` passes the masker whose rules these are.
    this.#needles = searches === undefined ? needleSearches(entries.map((e) => e.rule)) : searches.#needles;
    this.needleSet = searches === undefined ? (this.#needles === null ? null : NeedleSet.of(entries.map((e) => e.rule))) : searches.needleSet;
    this.#holdBack = searches === undefined ? new HoldBack(entries.map((e) => e.rule)) : searches.#holdBack;
    this.#marked = new Uint8Array(entries.length);
    this.#constant = entries.map(({ rule, replacement: r }) =>
      r.write !== undefined ? undefined : r.style === 'redact' && rule.fixed !== undefined ? rule.fixed : r.style === 'redact' || r.style === 'placeholder' ? replacementFor('', rule.label, r) : undefined,
    );
  }

  /**
   * The same rules writing through other replacements (one exchange's placeholders): the searches compiled
   * for the rules are shared, so binding an exchange costs one small object, not a compile.
   */
  rebound(bind: (replacement: ReplacementOptions) => ReplacementOptions): TextMasker {
    return new TextMasker(
      this.#entries.map((e) => ({ rule: e.rule, replacement: bind(e.replacement) })),
      this.#allow,
      this,
    );
  }

  /** Whether any rule is configured (a profile of JSON rules only has none). */
  get empty(): boolean {
    return this.#entries.length === 0;
  }

  /** Masks a complete text; `escape` and `plain` as in MaskFromOptions. */
  mask(text: string, counter: MaskingCounter, escape?: (replacement: string) => string, plain = false): string {
    const options = escape === undefined ? (plain ? PLAIN : NO_OPTIONS) : { escape, plain };
    return this.maskFrom(text, 0, true, counter, options).output;
  }

  /**
   * Masks a complete text exactly as `mask` does, a step at a time, giving the event loop a turn
   * whenever `clock` says one is due, so a large body never holds the loop.
   */
  async maskAsync(text: string, counter: MaskingCounter, clock = new TurnClock()): Promise<string> {
    if (text.length <= MASK_STEP_CHARS) return this.mask(text, counter);
    const channel = new TextChannel(this, counter);
    let out = '';
    for (let at = 0; at < text.length; ) {
      const end = sliceEnd(text, at, MASK_STEP_CHARS);
      out += channel.push(text.slice(at, end));
      at = end;
      await clock.pause();
    }
    return out + channel.end();
  }

  /**
   * Masks `text` from `from` up to the point where every match is decided (all of it when `final`).
   * Characters before `from` are context only (look-behinds); `next` is where the caller resumes.
   */
  maskFrom(text: string, from: number, final: boolean, counter: MaskingCounter, options: MaskFromOptions = NO_OPTIONS): MaskStep {
    const { spans, escape } = options;
    // Rules read the normalised view (escapes, NFKC, invisible characters, look-alikes); ASCII skips it.
    if (spans === undefined && options.plain !== true && needsView(text, final)) return this.#maskFromView(text, from, final, counter, escape);
    const cut = final ? text.length : this.#holdBack.from(text, from);
    if (cut <= from) return { output: '', next: from };
    const checks = this.budgetOf(counter);
    checks.credit(cut - from);
    // A short text (a stream's delta) is passed at once when no needle is in it. On a long one the
    // joined search steps through every character: each rule's own needle is faster to look for.
    if (text.length - from <= JOINED_NEEDLES_MAX && !this.#mayMatch(text, from)) return { output: text.slice(from, cut), next: cut };
    return this.maskDecided(text, from, cut, checks, counter, options);
  }

  /** Where the matches of `text` from `from` on are all decided (see TextRule.holdFrom). */
  holdFrom(text: string, from: number): number {
    return this.#holdBack.from(text, from);
  }

  /**
   * `maskFrom` of plain text (no view needed) once the hold-back has cut it at `cut` (> `from`) and
   * `checks` has been credited with the characters up to it: a stream that decides those itself.
   */
  maskDecided(text: string, from: number, cut: number, checks: CheckBudget, counter: MaskingCounter, options: MaskFromOptions = NO_OPTIONS): MaskStep {
    // Rules with a match still to come, in the order they are listed (their cursors, and their places in
    // the list); one scan of the text serves them all.
    const cursors: RuleCursor[] = [];
    const orders: number[] = [];
    const scan = new TextScan(text, from);
    const entries = this.#entries;
    // A short text (a stream's window) is read once for every needle; a long one is searched per needle.
    const marked = this.needleSet !== null && text.length - from <= JOINED_NEEDLES_MAX ? this.#marked.fill(0) : null;
    if (marked !== null) this.needleSet!.markLive(text, from, marked);
    for (let order = 0; order < entries.length; order++) {
      const { rule } = entries[order]!;
      if (marked !== null ? marked[order] === 0 : rule.contains !== undefined && !hasNeedle(rule.contains, text, Math.max(0, from - rule.contains.before), scan)) continue;
      cursors.push(rule.cursor(text, from, cut, checks, scan));
      orders.push(order);
    }
    let live = cursors.length;
    let out = '';
    let pos = from;
    // Every span a rule finds is masked; spans that overlap are masked as one, named after the first:
    // the group being formed, `groupStart` -1 while there is none.
    let groupStart = -1;
    let groupEnd = 0;
    let groupOrder = 0;
    let groupAllowed = false;
    for (;;) {
      // The front candidate of all rules: leftmost, then longest, then the rule listed first.
      let best: RuleCandidate | null = null;
      let owner = 0;
      let kept = 0;
      for (let i = 0; i < live; i++) {
        const cursor = cursors[i]!;
        const c = cursor.peek();
        // Decided by where the whole match starts: a JSON key's value is decided once its key is. A
        // cursor out of matches, or past the cut, stays so: it leaves the live list.
        if (c === null || c.anchor >= cut) continue;
        if (kept < i) {
          cursors[kept] = cursor;
          orders[kept] = orders[i]!;
        }
        if (best === null || c.start < best.start || (c.start === best.start && c.end > best.end)) {
          best = c;
          owner = kept;
        }
        kept++;
      }
      // The first `live` cursors are the live ones (shortening the arrays would cost more than the count).
      live = kept;
      if (best === null) break;
      const cursor = cursors[owner]!;
      // A candidate may be its cursor itself (see PatternCursor): it is read before the cursor moves on.
      const start = best.start;
      const end = best.end;
      const inGroup = groupStart !== -1 && start < groupEnd;
      if (inGroup && end <= groupEnd) {
        // Already masked whatever it is: no check needed.
        cursor.skipWithin(groupEnd);
        continue;
      }
      if (!best.checked) {
        cursor.check();
        continue;
      }
      const allowed = this.#allow.size > 0 && this.#allow.has(best.value.toLowerCase());
      cursor.skip();
      if (inGroup) {
        // Reaches past the group: the group grows, and is left alone only if both are allowed values.
        groupEnd = end;
        groupAllowed &&= allowed;
      } else {
        if (groupStart !== -1) {
          out += text.slice(pos, groupStart) + this.#written(text, groupStart, groupEnd, groupOrder, groupAllowed, counter, options);
          pos = groupEnd;
        }
        groupStart = start;
        groupEnd = end;
        groupOrder = orders[owner]!;
        groupAllowed = allowed;
      }
    }
    if (groupStart !== -1) {
      out += text.slice(pos, groupStart) + this.#written(text, groupStart, groupEnd, groupOrder, groupAllowed, counter, options);
      pos = groupEnd;
    }
    const next = Math.max(pos, cut);
    out += text.slice(pos, next);
    return { output: out, next };
  }

  /** What a group of spans `[start, end)` found first by rule `order` is written as: its replacement, counted. */
  #written(text: string, start: number, end: number, order: number, allowed: boolean, counter: MaskingCounter, options: MaskFromOptions): string {
    if (allowed) return text.slice(start, end);
    const { rule, replacement } = this.#entries[order]!;
    // A replacement that does not depend on the value needs no copy of it.
    const replaced =
      this.#constant[order] ?? (replacement.style === 'redact' && rule.fixed !== undefined ? rule.fixed : replacementFor(text.slice(start, end), rule.label, replacement));
    const written = options.escape === undefined ? replaced : options.escape(replaced);
    options.spans?.push({ start, end, replacement: written });
    counter.add(rule.entity, rule.rule);
    return written;
  }

  /** `maskFrom` through the normalised view: found there, masked over the original characters. */
  #maskFromView(text: string, from: number, final: boolean, counter: MaskingCounter, escape: MaskFromOptions['escape']): MaskStep {
    // An escape cut by the end of a fragment (`jane\u00`) is held until it is whole.
    const partial = final ? -1 : text.search(/\\(u[0-9a-fA-F]{0,3})?$/);
    if (partial !== -1 && partial >= from) return this.maskFrom(text.slice(0, partial), from, false, counter, { escape });
    const view = normalisedView(text);
    const spans: ViewSpan[] = [];
    const step = this.maskFrom(view.text, viewIndexOf(view, from), final, counter, { spans, escape });
    // The hold-back is decided in view characters: it starts where its first one came from.
    const next = Math.max(from, originOf(view, step.next, text.length));
    return { output: applySpans(text, view, spans, from, next), next };
  }

  /** The exchange's budget of costly checks with these rules: the counter keeps it, and drops it with the exchange. */
  budgetOf(counter: MaskingCounter): CheckBudget {
    return counter.stateOf(this, CheckBudget);
  }

  /** False when no rule can match anywhere in `text` (no rule's needle is in it): a cheap first look. */
  mayMatchIn(text: string): boolean {
    if (text.length <= JOINED_NEEDLES_MAX) return this.#mayMatch(text, 0);
    const scan = new TextScan(text);
    for (const { rule } of this.#entries) if (rule.contains === undefined || hasNeedle(rule.contains, text, 0, scan)) return true;
    return false;
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

const NO_OPTIONS: MaskFromOptions = Object.freeze({});
const PLAIN: MaskFromOptions = Object.freeze({ plain: true });

/** Texts up to this long are first searched for all needles at once (see maskFrom). */
const JOINED_NEEDLES_MAX = 256;

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

/** The end of a slice of about `size` characters from `at`, never between the halves of a surrogate pair. */
export function sliceEnd(text: string, at: number, size: number): number {
  let end = Math.min(text.length, at + size);
  const code = text.charCodeAt(end - 1);
  if (end < text.length && code >= 0xd800 && code <= 0xdbff) end++;
  return end;
}

/** The index of the last character of `text` that is not ASCII or is a backslash, -1 when none. */
function lastUnplain(text: string): number {
  // A long text is checked natively first (see needsView): most are plain.
  if (text.length > 64 && Buffer.byteLength(text, 'utf8') === text.length && text.indexOf('\\') === -1) return -1;
  for (let i = text.length - 1; i >= 0; i--) {
    const c = text.charCodeAt(i);
    if (c >= 0x80 || c === 0x5c) return i;
  }
  return -1;
}

/**
 * A held-back tail at least this long is scanned again only once the text that arrived after it is a
 * quarter of its length: each scan costs the whole tail, so tiny deltas behind a long unfinished match
 * (a PEM block, a 13 KB token) would otherwise cost the tail's length per character.
 */
const RESCAN_HELD_MIN = 1024;
const RESCAN_FRACTION = 4;

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
  /** Characters pushed since the last scan. */
  #unscanned = 0;
  /**
   * Where the buffer's last character that is not plain ASCII (or a backslash) is, -1 when none: a
   * buffer without one needs no normalised view, which saves looking at the whole buffer per delta.
   */
  #lastUnplain = -1;
  /**
   * The needles found in the buffer so far (per distance group, the last index where one starts) and
   * where the buffer had ended when they were looked for: a plain buffer is searched only in what each
   * delta adds. Null while the masker's needles do not fit a table (see NeedleSet).
   */
  readonly #needles: NeedleSet | null;
  #lastNeedle: number[];
  #searched = 0;
  /** The exchange's budget of costly checks, taken from the counter once. */
  #checks: CheckBudget | null = null;

  constructor(masker: TextMasker, counter: MaskingCounter) {
    this.#masker = masker;
    this.#counter = counter;
    this.#needles = masker.needleSet;
    this.#lastNeedle = this.#needles?.state() ?? [];
  }

  /** Characters held back right now (what a benchmark of time-to-first-token wants to see). */
  get held(): number {
    return this.#buf.length - this.#from;
  }

  push(delta: string): string {
    if (delta === '') return '';
    const unplain = lastUnplain(delta);
    if (unplain !== -1) this.#lastUnplain = this.#buf.length + unplain;
    this.#buf += delta;
    this.#unscanned += delta.length;
    const heldBefore = this.#buf.length - this.#from - this.#unscanned;
    if (heldBefore >= RESCAN_HELD_MIN && this.#unscanned * RESCAN_FRACTION < heldBefore) return '';
    this.#unscanned = 0;
    const { output, next } = this.#lastUnplain === -1 && this.#needles !== null ? this.#plainStep(this.#needles) : this.#viewStep();
    const keep = Math.max(0, next - CONTEXT_CHARS);
    this.#buf = this.#buf.slice(keep);
    this.#from = next - keep;
    this.#lastUnplain = this.#lastUnplain < keep ? -1 : this.#lastUnplain - keep;
    this.#searched -= keep;
    for (let g = 0; g < this.#lastNeedle.length; g++) this.#lastNeedle[g]! -= keep;
    return output;
  }

  /**
   * `maskFrom` of a plain buffer, as it decides (hold-back, budget, then the rules only where a needle
   * is), with the needles of the characters added since the last step: the held-back text was searched
   * then and is not searched again.
   */
  #plainStep(needles: NeedleSet): MaskStep {
    const text = this.#buf;
    const from = this.#from;
    const cut = this.#masker.holdFrom(text, from);
    if (cut <= from) return { output: '', next: from };
    this.#checks ??= this.#masker.budgetOf(this.#counter);
    this.#checks.credit(cut - from);
    this.#searched = needles.find(text, this.#searched, this.#lastNeedle);
    if (!needles.mayMatch(this.#lastNeedle, from)) return { output: text.slice(from, cut), next: cut };
    return this.#masker.maskDecided(text, from, cut, this.#checks, this.#counter);
  }

  /** `maskFrom` through the normalised view; what was learnt of the needles is dropped, as the view is searched instead. */
  #viewStep(): MaskStep {
    this.#searched = 0;
    this.#lastNeedle.fill(-1);
    return this.#masker.maskFrom(this.#buf, this.#from, false, this.#counter, this.#lastUnplain === -1 ? PLAIN : NO_OPTIONS);
  }

  end(): string {
    if (this.held === 0) return '';
    const { output } = this.#masker.maskFrom(this.#buf, this.#from, true, this.#counter, this.#lastUnplain === -1 ? PLAIN : NO_OPTIONS);
    this.#buf = '';
    this.#from = 0;
    this.#unscanned = 0;
    this.#lastUnplain = -1;
    this.#searched = 0;
    this.#lastNeedle.fill(-1);
    return output;
  }
}
