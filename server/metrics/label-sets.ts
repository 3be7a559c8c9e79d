/**
 * Label objects for prom-client, made once per distinct set of values and then handed out again: the
 * exchange listener labels several samples per exchange, and a fresh object for each would be garbage the
 * data path pays to collect. The sets held are the series prom-client keeps anyway, so this grows no
 * further than the registry does.
 */
export class LabelSets<N extends string> {
  readonly #names: readonly N[];
  readonly #root = new Map<string, unknown>();

  constructor(names: readonly N[]) {
    if (names.length === 0 || names.length > 5) throw new RangeError('a label set has 1 to 5 labels');
    this.#names = names;
  }

  /** The labels with these values, in the order of the names (values past the names are ignored). */
  of(a: string, b = '', c = '', d = '', e = ''): Readonly<Record<N, string>> {
    const depth = this.#names.length;
    let node = this.#root;
    for (let i = 0; i < depth - 1; i++) {
      const value = pick(i, a, b, c, d, e);
      let next = node.get(value) as Map<string, unknown> | undefined;
      if (next === undefined) {
        next = new Map();
        node.set(value, next);
      }
      node = next;
    }
    const last = pick(depth - 1, a, b, c, d, e);
    let labels = node.get(last) as Readonly<Record<N, string>> | undefined;
    if (labels === undefined) {
      // Not frozen: prom-client keeps the object as the series' labels, and a frozen one would make any write of its throw on the data path.
      labels = Object.fromEntries(this.#names.map((name, i) => [name, pick(i, a, b, c, d, e)])) as Record<N, string>;
      node.set(last, labels);
    }
    return labels;
  }
}

/** The i-th of five values, without putting them in an array on every call. */
function pick(i: number, a: string, b: string, c: string, d: string, e: string): string {
  return i === 0 ? a : i === 1 ? b : i === 2 ? c : i === 3 ? d : e;
}
