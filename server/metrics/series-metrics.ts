import type { Metric, Registry } from 'prom-client';
import { LabelSets } from './label-sets.js';

/**
 * Counters and histograms for the metrics moved once per exchange. prom-client's own build a key string
 * from the labels and check every label name on each `inc` and `observe` (about half a microsecond each,
 * five times per exchange); these find a series by its label object, then add. They sit in prom-client's
 * registry as metrics of their own and give it what its Counter and Histogram would give for the same
 * counts, so the exposition and the merge across `--workers` stay as they were.
 */

type Labels<N extends string> = Readonly<Record<N, string>>;

/** One sample as prom-client's metrics give it to a registry. */
interface Sample {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  readonly metricName?: string;
  /** Labels every sample of a series shares, written after `labels` (prom-client's histograms). */
  readonly sharedLabels?: Readonly<Record<string, string>>;
  readonly exemplar?: null;
}

/** A metric's samples as prom-client's metrics give them to a registry (`get`, `getForPromString`). */
interface Samples {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly values: readonly Sample[];
  readonly aggregator: 'sum';
}

/** The series of one metric: found by the label object a caller passes (those of a LabelSets are reused), else by the values. */
class SeriesTable<N extends string, S> {
  readonly #sets: LabelSets<N>;
  readonly #names: readonly N[];
  /** Every series, by its own label object (one per set of values): what a scrape reads. */
  readonly byLabels = new Map<Labels<N>, S>();
  /** The label objects callers passed, each to its series; weak, so fresh objects passed once are not kept. */
  #seen = new WeakMap<Labels<N>, S>();
  readonly #create: (labels: Labels<N>) => S;

  constructor(names: readonly N[], create: (labels: Labels<N>) => S) {
    this.#names = names;
    this.#sets = new LabelSets(names);
    this.#create = create;
  }

  /** Forgets every series (a registry's `resetMetrics`): the label objects callers keep map to new ones from here on. */
  clear(): void {
    this.byLabels.clear();
    this.#seen = new WeakMap();
  }

  of(labels: Labels<N>): S {
    let series = this.#seen.get(labels);
    if (series === undefined) {
      const n = this.#names;
      const own = this.#sets.of(labels[n[0]!], labels[n[1]!], labels[n[2]!], labels[n[3]!], labels[n[4]!]);
      series = this.byLabels.get(own);
      if (series === undefined) {
        series = this.#create(own);
        this.byLabels.set(own, series);
      }
      this.#seen.set(labels, series);
    }
    return series;
  }
}

interface MetricOptions<N extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly N[];
  readonly registers: readonly Registry[];
}

/** A counter by labels. Values below zero or not finite are ignored: the data path never throws. */
export class SeriesCounter<N extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'counter';
  readonly aggregator = 'sum';
  readonly #series: SeriesTable<N, { readonly labels: Labels<N>; value: number }>;

  constructor(options: MetricOptions<N>) {
    this.name = options.name;
    this.help = options.help;
    this.#series = new SeriesTable(options.labelNames, (labels) => ({ labels, value: 0 }));
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  inc(labels: Labels<N>, value = 1): void {
    if (value >= 0 && value !== Infinity) this.#series.of(labels).value += value;
  }

  /** As prom-client's Counter answers a registry. */
  get(): Promise<Samples> {
    const values = [...this.#series.byLabels.values()].map(({ labels, value }) => ({ labels, value }));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  reset(): void {
    this.#series.clear();
  }
}

/** One histogram series: observations per bucket (not cumulative; above the last bound they are only counted), their sum and count. */
interface HistogramSeries<N extends string> {
  readonly labels: Labels<N>;
  readonly buckets: number[];
  sum: number;
  count: number;
}

/** A histogram by labels. Values that are not finite are ignored: the data path never throws. */
export class SeriesHistogram<N extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #bounds: readonly number[];
  readonly #series: SeriesTable<N, HistogramSeries<N>>;

  constructor(options: MetricOptions<N> & { readonly buckets: readonly number[] }) {
    this.name = options.name;
    this.help = options.help;
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    this.#series = new SeriesTable(options.labelNames, (labels) => ({ labels, buckets: this.#bounds.map(() => 0), sum: 0, count: 0 }));
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  observe(labels: Labels<N>, value: number): void {
    if (!Number.isFinite(value)) return;
    const series = this.#series.of(labels);
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) series.buckets[i]! += 1;
    series.sum += value;
    series.count += 1;
  }

  /**
   * As prom-client's Histogram answers a registry's text exposition: `le` as the sample's label, the
   * series' labels shared (so each line reads `le` first, as prom-client writes it).
   */
  getForPromString(): Promise<Samples> {
    const values: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.#series.byLabels.values()) {
      let upTo = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        upTo += s.buckets[i]!;
        values.push({ labels: { le: this.#bounds[i]! }, sharedLabels: s.labels, value: upTo, metricName: bucket, exemplar: null });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket, exemplar: null });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  /** As prom-client's Histogram answers `getMetricsAsJSON` (what the merge across workers reads): each sample's labels whole, `le` first. */
  async get(): Promise<Samples> {
    const text = await this.getForPromString();
    return { ...text, values: text.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })) };
  }

  reset(): void {
    this.#series.clear();
  }
}
