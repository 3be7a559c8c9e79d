import { hostname } from 'node:os';
import { parseDuration } from '../config/duration.js';
import { AuditDeliveryError, fetchFailure, type AuditSink } from './audit-sink.js';
import type { AuditSinkConfig } from './audit-sinks-config.js';

type SplunkHecSinkConfig = Extract<AuditSinkConfig, { type: 'splunk_hec' }>;

/** The HEC event endpoint under the configured base URL (a URL that already names it is kept). */
export function hecEndpoint(url: string): string {
  const base = url.replace(/\/+$/, '');
  return base.endsWith('/services/collector/event') ? base : `${base}/services/collector/event`;
}

/**
 * Splunk's HTTP Event Collector: a batch is the events' HEC envelopes (`{time, host, source, sourcetype,
 * index?, event}`) one after the other in one POST, as HEC takes them; `time` in epoch seconds.
 */
export function createSplunkHecSink(config: SplunkHecSinkConfig, doFetch: typeof fetch = fetch): AuditSink {
  const endpoint = hecEndpoint(config.url);
  const timeoutMs = parseDuration(config.timeout);
  const host = hostname();
  return {
    async send(events) {
      const body = events
        .map((event) =>
          JSON.stringify({
            time: event.at / 1000,
            host,
            source: config.source,
            sourcetype: config.sourcetype,
            ...(config.index === undefined ? {} : { index: config.index }),
            event,
          }),
        )
        .join('\n');
      let res: Response;
      try {
        res = await doFetch(endpoint, {
          method: 'POST',
          headers: { authorization: `Splunk ${config.token}`, 'content-type': 'application/json', 'user-agent': 'sluice-audit' },
          body,
          signal: AbortSignal.timeout(timeoutMs),
          redirect: 'error',
        });
      } catch (err) {
        throw new AuditDeliveryError(fetchFailure(err), { cause: err });
      }
      await res.body?.cancel().catch(() => undefined);
      if (!res.ok) throw new AuditDeliveryError(`HTTP ${res.status}`);
    },
    close: () => Promise.resolve(),
  };
}
