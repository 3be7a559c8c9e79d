/** One line of a masking summary: what was found, by which rule, how many times; never the value. */
export interface MaskingSummaryEntry {
  readonly entity: string;
  readonly rule: string;
  readonly count: number;
}

/** Pairs of (entity, rule) a counter keeps in its short list. */
const FEW_KINDS = 8;

/** Counts replacements for one exchange (or one `mask test` run); the recorder stores `entries()`. */
export class MaskingCounter {
  /** rule → entity → count, past the short list (made when first needed): no key string is built per replacement. */
  #counts: Map<string, Map<string, { entity: string; rule: string; count: number }>> | null = null;
  /** The first FEW_KINDS (entity, rule) pairs counted, before the maps: most exchanges count no others. */
  readonly #few: { entity: string; rule: string; count: number }[] = [];
  /**
   * Per-exchange state of the maskers that count here (each one's budget of costly checks), kept beside
   * the counts so it is dropped with them: owners and their state, in turn. An exchange has one or two.
   */
  readonly #state: unknown[];

  /** `state`: the per-exchange state to share (a trial's, see `trial`); a new counter's own by default. */
  constructor(state: unknown[] = []) {
    this.#state = state;
  }

  /**
   * A counter for a pass that may be thrown away (a body read as JSON that turns out not to be one): counts
   * of its own, so a discarded pass counts nothing, and this counter's per-exchange state, so the pass spends
   * the exchange's budgets. `commit` adds its counts here.
   */
  trial(): MaskingCounter {
    return new MaskingCounter(this.#state);
  }

  /** Adds the counts of `trial` (one of this counter's trials, or any other counter) to this counter's. */
  commit(trial: MaskingCounter): void {
    for (const e of trial.#few) this.add(e.entity, e.rule, e.count);
    if (trial.#counts !== null) for (const byEntity of trial.#counts.values()) for (const e of byEntity.values()) this.add(e.entity, e.rule, e.count);
  }

  /** What `owner` keeps for this exchange, made by `create` on first use. */
  stateOf<T>(owner: object, create: new () => T): T {
    const state = this.#state;
    for (let i = 0; i < state.length; i += 2) if (state[i] === owner) return state[i + 1] as T;
    const made = new create();
    state.push(owner, made);
    return made;
  }

  add(entity: string, rule: string, count = 1): void {
    // An exchange counts a few kinds of value: they are looked for in a short list before the maps.
    const few = this.#few;
    for (let i = 0; i < few.length; i++) {
      const e = few[i]!;
      if (e.rule === rule && e.entity === entity) {
        e.count += count;
        return;
      }
    }
    // The list never shrinks: a pair only goes to the maps once it is full.
    if (few.length < FEW_KINDS) {
      few.push({ entity, rule, count });
      return;
    }
    const counts = (this.#counts ??= new Map());
    let byEntity = counts.get(rule);
    if (byEntity === undefined) {
      byEntity = new Map();
      counts.set(rule, byEntity);
    }
    const hit = byEntity.get(entity);
    if (hit === undefined) byEntity.set(entity, { entity, rule, count });
    else hit.count += count;
  }

  /** Total replacements so far. */
  get total(): number {
    let n = 0;
    for (const e of this.#few) n += e.count;
    if (this.#counts !== null) for (const byEntity of this.#counts.values()) for (const e of byEntity.values()) n += e.count;
    return n;
  }

  /** The summary, sorted by entity then rule so it reads (and diffs) the same every time. */
  entries(): MaskingSummaryEntry[] {
    // Built in one pass over the counts (an exchange's end reads it): copies, so later counts do not change it.
    const out: MaskingSummaryEntry[] = [];
    for (const e of this.#few) out.push({ entity: e.entity, rule: e.rule, count: e.count });
    if (this.#counts !== null) for (const byEntity of this.#counts.values()) for (const e of byEntity.values()) out.push({ entity: e.entity, rule: e.rule, count: e.count });
    if (out.length > 1) out.sort(byEntityThenRule);
    return out;
  }
}

function byEntityThenRule(a: MaskingSummaryEntry, b: MaskingSummaryEntry): number {
  return a.entity === b.entity ? a.rule.localeCompare(b.rule) : a.entity.localeCompare(b.entity);
}
