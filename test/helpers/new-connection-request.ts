/**
 * Requests to a `sluice serve --workers` pool, each on a TCP connection of its own: a connection, not a
 * request, goes to one worker, so a keep-alive agent would pin every request to the same worker.
 */
import { request } from 'node:http';

/** What came back: the status, the whole body, and the gateway's request id. */
export interface NewConnectionAnswer {
  readonly status: number;
  readonly body: string;
  readonly requestId: string;
}

/** One HTTP request to 127.0.0.1:`port` on a new connection, closed after the answer; rejects on a socket error. */
export function requestOnNewConnection(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string | number>; body?: string } = {},
): Promise<NewConnectionAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: options.method ?? 'GET', path, agent: false, headers: { connection: 'close', ...options.headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body, requestId: String(res.headers['x-request-id']) }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A chat completion of the demo model on connection `llm` as the bearer of `token`, on a new connection: its answer quotes `text`. */
export function completeOnNewConnection(port: number, token: string, text: string): Promise<NewConnectionAnswer> {
  const body = JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: text }] });
  return requestOnNewConnection(port, '/v1/proxy/llm/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    body,
  });
}
