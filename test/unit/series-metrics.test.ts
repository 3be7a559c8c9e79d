import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LabelSets } from '../../server/metrics/label-sets.js';
import { SeriesCounter, SeriesHistogram } from '../../server/metrics/series-metrics.js';

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600];

/** The same metrics twice: prom-client's own, and the series kept as plain numbers, each in a registry of its own. */
function twins() {
  const theirs = new Registry();
  const ours = new Registry();
  const counter = { name: 'sluice_test_total', help: 'Things "counted"\\ here', labelNames: ['connection', 'code'] as const };
  const histogram = { name: 'sluice_test_seconds', help: 'Durations', labelNames: ['connection', 'via'] as const, buckets: BUCKETS };
  return {
    theirs,
    ours,
    theirCounter: new Counter({ ...counter, labelNames: [...counter.labelNames], registers: [theirs] }),
    ourCounter: new SeriesCounter({ ...counter, registers: [ours] }),
    theirHistogram: new Histogram({ ...histogram, labelNames: [...histogram.labelNames], registers: [theirs] }),
    ourHistogram: new SeriesHistogram({ ...histogram, registers: [ours] }),
  };
}

describe('series metrics', () => {
  it("expose and merge across workers exactly as prom-client's Counter and Histogram with the same counts", async () => {
    const workers = [twins(), twins()];
    const codes = new LabelSets(['connection', 'code'] as const);
    const ways = new LabelSets(['connection', 'via'] as const);
    const values = [0, 0.001, 0.005, 0.0051, 0.3, 1, 42, 599.9, 600, 601, 1e6];
    workers.forEach((w, k) => {
      values.forEach((v, i) => {
        const connection = i % 3 === 0 ? 'llm' : 'odd "name"\n\\';
        // Fresh label objects as well as reused ones: both reach the one series of their values.
        const byCode = i % 2 === 0 ? codes.of(connection, 'none') : { connection, code: 'none' };
        w.theirCounter.inc(byCode, i + k);
        w.ourCounter.inc(byCode, i + k);
        const byWay = i % 2 === 0 ? ways.of(connection, 'proxy') : { connection, via: 'tunnel' };
        w.theirHistogram.observe(byWay, v);
        w.ourHistogram.observe(byWay, v);
      });
    });
    for (const w of workers) expect(await w.ours.metrics()).toBe(await w.theirs.metrics());
    // The primary of `--workers N` merges what each worker's registry sends over IPC (JSON).
    const merged = async (side: 'theirs' | 'ours') =>
      AggregatorRegistry.aggregate(await Promise.all(workers.map(async (w) => JSON.parse(JSON.stringify(await w[side].getMetricsAsJSON())) as never))).metrics();
    expect(await merged('ours')).toBe(await merged('theirs'));
    // Summed: i = 0 and 6 go to this series, in each of the two workers.
    expect(await merged('ours')).toContain('sluice_test_seconds_count{connection="llm",via="proxy"} 4\n');
  });

  it('ignores what prom-client would throw on (a value that is not a number, a counter going down) rather than throw on the data path', async () => {
    const { ours, ourCounter, ourHistogram } = twins();
    ourCounter.inc({ connection: 'llm', code: 'none' }, 2);
    ourCounter.inc({ connection: 'llm', code: 'none' }, -1);
    ourCounter.inc({ connection: 'llm', code: 'none' }, Number.NaN);
    ourHistogram.observe({ connection: 'llm', via: 'proxy' }, Number.POSITIVE_INFINITY);
    ourHistogram.observe({ connection: 'llm', via: 'proxy' }, 0.2);
    const text = await ours.metrics();
    expect(text).toContain('sluice_test_total{connection="llm",code="none"} 2\n');
    expect(text).toContain('sluice_test_seconds_count{connection="llm",via="proxy"} 1\n');
    expect(text).toContain('sluice_test_seconds_sum{connection="llm",via="proxy"} 0.2\n');
  });

  it("start again from nothing after the registry's resetMetrics, and count what comes after, as prom-client's do", async () => {
    const { theirs, ours, theirCounter, ourCounter, theirHistogram, ourHistogram } = twins();
    // The label objects the data path keeps and passes again after the reset.
    const byCode = new LabelSets(['connection', 'code'] as const).of('llm', 'none');
    const byWay = new LabelSets(['connection', 'via'] as const).of('llm', 'proxy');
    for (const [counter, histogram] of [[theirCounter, theirHistogram], [ourCounter, ourHistogram]] as const) {
      counter.inc(byCode, 3);
      histogram.observe(byWay, 0.2);
    }
    theirs.resetMetrics();
    ours.resetMetrics();
    for (const [counter, histogram] of [[theirCounter, theirHistogram], [ourCounter, ourHistogram]] as const) {
      counter.inc(byCode, 5);
      histogram.observe(byWay, 2);
    }
    const text = await ours.metrics();
    expect(text).toBe(await theirs.metrics());
    expect(text).toContain('sluice_test_total{connection="llm",code="none"} 5\n');
    expect(text).toContain('sluice_test_seconds_count{connection="llm",via="proxy"} 1\n');
  });
});
