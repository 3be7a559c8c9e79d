/** One line of a masking summary: what was found, by which rule, how many times; never the value. */
export interface MaskingSummaryEntry {
  readonly entity: string;
  readonly rule: string;
  readonly count: number;
}

/** Counts replacements for one exchange (or one `mask test` run); the recorder stores `entries()`. */
export class MaskingCounter {
  /** rule → entity → count: no key string is built per replacement. */
  readonly #counts = new Map<string, Map<string, { entity: string; rule: string; count: number }>>();

  add(entity: string, rule: string): void {
    let byEntity = this.#counts.get(rule);
    if (byEntity === undefined) {
      byEntity = new Map();
      this.#counts.set(rule, byEntity);
    }
    const hit = byEntity.get(entity);
    if (hit === undefined) byEntity.set(entity, { entity, rule, count: 1 });
    else hit.count++;
  }

  /** Total replacements so far. */
  get total(): number {
    let n = 0;
    for (const e of this.#all()) n += e.count;
    return n;
  }

  *#all(): Iterable<{ entity: string; rule: string; count: number }> {
    for (const byEntity of this.#counts.values()) yield* byEntity.values();
  }

  /** The summary, sorted by entity then rule so it reads (and diffs) the same every time. */
  entries(): MaskingSummaryEntry[] {
    return [...this.#all()]
      .map((e) => ({ ...e }))
      .sort((a, b) => (a.entity === b.entity ? a.rule.localeCompare(b.rule) : a.entity.localeCompare(b.entity)));
  }
}
