/** One line of a masking summary: what was found, by which rule, how many times; never the value. */
export interface MaskingSummaryEntry {
  readonly entity: string;
  readonly rule: string;
  readonly count: number;
}

/** Counts replacements for one exchange (or one `mask test` run); the recorder stores `entries()`. */
export class MaskingCounter {
  readonly #counts = new Map<string, { entity: string; rule: string; count: number }>();

  add(entity: string, rule: string): void {
    const key = `${entity}\u0000${rule}`;
    const hit = this.#counts.get(key);
    if (hit === undefined) this.#counts.set(key, { entity, rule, count: 1 });
    else hit.count++;
  }

  /** Total replacements so far. */
  get total(): number {
    let n = 0;
    for (const e of this.#counts.values()) n += e.count;
    return n;
  }

  /** The summary, sorted by entity then rule so it reads (and diffs) the same every time. */
  entries(): MaskingSummaryEntry[] {
    return [...this.#counts.values()]
      .map((e) => ({ ...e }))
      .sort((a, b) => (a.entity === b.entity ? a.rule.localeCompare(b.rule) : a.entity.localeCompare(b.entity)));
  }
}
