import { createServer, type Server } from 'node:http';
import { urlHost, type ListenAddress } from '../listen-address.js';
import { listenOn } from '../listen-probe.js';

/** What the listener serves: one gateway's registry, or (in the primary of `--workers N`) every worker's, merged. */
export interface MetricsSource {
  /** The Prometheus text exposition. */
  scrape(): Promise<{ readonly contentType: string; readonly body: string }>;
}

/** The metrics listener: its own socket, so the data port never serves /metrics. */
export interface MetricsListener {
  /** `http://HOST:PORT`. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (and nothing else) on `address`. It has no authentication: the metrics name
 * connections and, with `metrics.per_user`, users, so it belongs on an address only the scraper reaches.
 * Throws ERR_LISTEN_FAILED when the address cannot be bound.
 */
export async function startMetricsListener(address: ListenAddress, metrics: MetricsSource): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: this listener serves GET /metrics\n');
      return;
    }
    metrics.scrape().then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(req.method === 'HEAD' ? undefined : body),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('The metrics could not be collected\n'),
    );
  });
  const port = await listenOn(server, address);
  return {
    url: `http://${urlHost({ host: address.host, port })}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
