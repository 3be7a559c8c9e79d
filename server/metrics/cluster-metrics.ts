import { AggregatorRegistry, type Registry } from 'prom-client';
import type { MetricsSource } from './metrics-listener.js';

/**
 * Under `serve --workers N`, each worker keeps its own registry and the primary serves `metrics_listen`:
 * a scrape asks every worker over node:cluster's IPC channel and answers with their metrics merged, each
 * metric by its `aggregator` (counters and histograms summed; see gateway-metrics.ts for the gauges). One
 * scrape thus counts every exchange, whichever worker the kernel handed its connection to.
 */

/**
 * Called in a worker: answers the primary's scrapes with `registry`. prom-client keeps the registries it
 * answers with, and its IPC listener, in its module, so a worker process holds one gateway's metrics only.
 */
export function answerPrimaryScrapes(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one is what installs the worker's listener for the primary's requests.
  new AggregatorRegistry();
}

/** Called in the primary: what `metrics_listen` serves there, every connected worker's metrics summed per series. */
export function clusterMetricsSource(): MetricsSource {
  const aggregator = new AggregatorRegistry();
  return {
    async scrape() {
      return { contentType: aggregator.contentType, body: await aggregator.clusterMetrics() };
    },
  };
}
