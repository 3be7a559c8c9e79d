/**
 * Prometheus metrics: SDK traffic through the tunnel and the direct proxy (allowed, denied, masked,
 * streamed, refused at the door) moves the counters and histograms a scrape of the metrics listener shows;
 * the data port never serves them, and two gateways in one process keep their own.
 */
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished } from 'vitest';
import { validateConfig } from '../../server/config/load.js';
import { parseListen } from '../../server/listen-address.js';
import { startMetricsListener } from '../../server/metrics/metrics-listener.js';
import { startGateway } from '../../server/start-gateway.js';
import { gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';
import { openLocalHttpTunnel } from '../helpers/local-http-tunnel.js';

const gateways = gatewayFixture();

const METRICS_CONFIG = {
  metrics_listen: '127.0.0.1:0',
  masking_profiles: { pii: { detectors: ['email'] } },
  policies: [{ name: 'no-denied-model', when: 'request.json.model == "demo-denied"', action: 'deny' }],
};

/** Serves the gateway's metrics on a listener of their own, as `sluice serve` does, and scrapes them. */
async function scraper(gw: TestGateway): Promise<() => Promise<string>> {
  const listener = await startMetricsListener(parseListen('127.0.0.1:0'), gw.app.metrics!);
  onTestFinished(() => listener.close());
  return async () => {
    const res = await fetch(`${listener.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    return res.text();
  };
}

/** The value of one sample of the exposition: `name` with exactly `labels`; undefined when there is none. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = (m[2] ?? '')
      .split(/,(?=[a-z_]+=")/)
      .filter((l) => l !== '')
      .sort()
      .join(',');
    if (have === wanted) return Number(m[3]);
  }
  return undefined;
}

describe('Prometheus metrics', () => {
  it('count SDK calls through proxy and tunnel by decision and code, with durations, first-token times, tokens, masked values and identity failures', async () => {
    const gw = await gateways.start({
      config: METRICS_CONFIG,
      connections: ({ model }) => [modelConnection(model), modelConnection(model, { name: 'llm-masked', masking: ['pii'] })],
    });
    const scrape = await scraper(gw);
    const token = await gw.token('alice');
    const proxy = (connection: string, apiKey = token) => new OpenAI({ baseURL: `${gw.url}/v1/proxy/${connection}/v1`, apiKey, maxRetries: 0 });
    const messages = [{ role: 'user' as const, content: 'What is the status of order 7?' }];

    const before = await scrape();
    expect(sample(before, 'sluice_exchanges_total', { connection: 'llm', via: 'proxy', decision: 'allow', code: 'none' })).toBeUndefined();
    expect(sample(before, 'process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);

    // allowed, not streamed
    const plain = await proxy('llm').chat.completions.create({ model: 'demo-small', messages });
    // allowed and streamed, with usage in its last event
    const stream = await proxy('llm').chat.completions.create({ model: 'demo-large', messages, stream: true, stream_options: { include_usage: true } });
    let streamedUsage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) streamedUsage = chunk.usage ?? streamedUsage;
    // denied by policy
    await expect(proxy('llm').chat.completions.create({ model: 'demo-denied', messages })).rejects.toMatchObject({ status: 403 });
    // masked: the demo model's answer carries an email address
    const masked = await proxy('llm-masked').chat.completions.create({ model: 'demo-small', messages });
    expect(masked.choices[0]!.message.content).toContain('[EMAIL]');
    // refused at the door: a token the gateway cannot read
    await expect(proxy('llm', 'not-a-jwt').chat.completions.create({ model: 'demo-small', messages })).rejects.toMatchObject({ status: 401 });

    // through the tunnel, as `sluice connect` carries it
    const local = (await openLocalHttpTunnel(gw, 'llm')).openai();
    const tunneled = await local.chat.completions.create({ model: 'demo-small', messages });
    const text = await scrape();
    // exchanges, by connection, how they came, the decision and the error code
    expect(sample(text, 'sluice_exchanges_total', { connection: 'llm', via: 'proxy', decision: 'allow', code: 'none' })).toBe(2);
    expect(sample(text, 'sluice_exchanges_total', { connection: 'llm', via: 'proxy', decision: 'deny', code: 'ERR_POLICY_DENIED' })).toBe(1);
    expect(sample(text, 'sluice_exchanges_total', { connection: 'llm-masked', via: 'proxy', decision: 'allow', code: 'none' })).toBe(1);
    expect(sample(text, 'sluice_exchanges_total', { connection: 'llm', via: 'tunnel', decision: 'allow', code: 'none' })).toBe(1);
    // durations: every exchange observed, the upstream only for those that went there
    expect(sample(text, 'sluice_exchange_duration_seconds_count', { connection: 'llm', via: 'proxy' })).toBe(3);
    expect(sample(text, 'sluice_exchange_duration_seconds_count', { connection: 'llm', via: 'tunnel' })).toBe(1);
    expect(sample(text, 'sluice_upstream_duration_seconds_count', { connection: 'llm' })).toBe(3);
    expect(sample(text, 'sluice_exchange_duration_seconds_sum', { connection: 'llm', via: 'proxy' })).toBeGreaterThan(0);
    // first token: the streamed answer only
    expect(sample(text, 'sluice_time_to_first_token_seconds_count', { connection: 'llm' })).toBe(1);
    // tokens, from the answers' usage, as the SDK saw it
    const input = plain.usage!.prompt_tokens + tunneled.usage!.prompt_tokens;
    expect(sample(text, 'sluice_tokens_total', { connection: 'llm', model: 'demo-small', direction: 'input' })).toBe(input);
    expect(sample(text, 'sluice_tokens_total', { connection: 'llm', model: 'demo-small', direction: 'output' })).toBe(plain.usage!.completion_tokens + tunneled.usage!.completion_tokens);
    expect(sample(text, 'sluice_tokens_total', { connection: 'llm', model: 'demo-large', direction: 'output' })).toBe(streamedUsage!.completion_tokens);
    // masking, by entity
    expect(sample(text, 'sluice_masked_values_total', { connection: 'llm-masked', entity: 'email' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'sluice_masked_values_total', { connection: 'llm', entity: 'email' })).toBeUndefined();
    // identity failures, by code
    expect(sample(text, 'sluice_identity_failures_total', { code: 'ERR_TOKEN_MALFORMED' })).toBe(1);
    // gauges
    expect(sample(text, 'sluice_tunnels_open')).toBe(1);
    expect(sample(text, 'sluice_reviews_pending')).toBe(0);
    // no per-user labels unless asked for
    expect(text).not.toContain('user="alice"');

    // the data port never serves them
    const dataPort = await fetch(`${gw.url}/metrics`);
    expect(dataPort.status).toBe(404);
    expect(await dataPort.text()).not.toContain('sluice_exchanges_total');
  });

  it('label exchanges and tokens by user with metrics.per_user; a second gateway in the same process counts only its own', async () => {
    const gw = await gateways.start({ config: { ...METRICS_CONFIG, metrics: { per_user: true } } });
    const other = await gateways.start({ config: METRICS_CONFIG });
    const scrape = await scraper(gw);
    const scrapeOther = await scraper(other);
    const proxy = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: await gw.token('alice'), maxRetries: 0 });
    const answer = await proxy.chat.completions.create({ model: 'demo-small', messages: [{ role: 'user', content: 'hello' }] });

    const text = await scrape();
    expect(sample(text, 'sluice_exchanges_total', { connection: 'llm', via: 'proxy', decision: 'allow', code: 'none', user: 'alice' })).toBe(1);
    expect(sample(text, 'sluice_tokens_total', { connection: 'llm', model: 'demo-small', direction: 'input', user: 'alice' })).toBe(answer.usage!.prompt_tokens);
    const otherText = await scrapeOther();
    expect(otherText).toContain('# TYPE sluice_exchanges_total counter');
    expect(otherText).not.toMatch(/^sluice_exchanges_total\{/m);
  });

  it('sluice serve serves them on metrics_listen, its own listener: GET /metrics there, 404 for anything else, and on the data port', async () => {
    const config = validateConfig({
      listen: '127.0.0.1:0',
      metrics_listen: '127.0.0.1:0',
      identity: { issuer: gateways.idp.issuer, audience: gateways.idp.audience, cli_client_id: gateways.idp.cliClientId },
    });
    const gw = await startGateway({ config, logger: false });
    onTestFinished(() => gw.close());
    expect(gw.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(gw.metricsUrl).not.toBe(gw.url);

    const scraped = await fetch(`${gw.metricsUrl}/metrics`);
    expect(scraped.status).toBe(200);
    const text = await scraped.text();
    for (const name of ['sluice_exchanges_total', 'sluice_exchange_duration_seconds', 'sluice_upstream_duration_seconds', 'sluice_time_to_first_token_seconds', 'sluice_tokens_total', 'sluice_masked_values_total', 'sluice_reviews_pending', 'sluice_tunnels_open', 'sluice_identity_failures_total', 'nodejs_heap_size_used_bytes']) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect((await fetch(`${gw.metricsUrl}/v1/info`)).status).toBe(404);
    expect((await fetch(`${gw.url}/metrics`)).status).toBe(404);
    expect((await fetch(`${gw.url}/v1/info`)).status).toBe(200);

    await gw.close();
    await expect(fetch(`${gw.metricsUrl}/metrics`)).rejects.toThrow();
  });

  it('are not kept without metrics_listen', async () => {
    const gw = await gateways.start();
    expect(gw.app.metrics).toBeNull();
  });
});
