/**
 * Traces: SDK calls through the direct proxy and a tunnel reach an OTLP/HTTP receiver as one
 * `sluice.exchange` span each, with stage children and GenAI attributes, in the caller's trace when it sent
 * a `traceparent`; the upstream hears the gateway's span as its parent. With tracing off, the collector
 * hears nothing and the caller's trace context reaches the upstream as sent.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished } from 'vitest';
import { gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';
import { openLocalHttpTunnel } from '../helpers/local-http-tunnel.js';

const gateways = gatewayFixture();

/** An OTLP/HTTP trace receiver: every POST /v1/traces body, parsed (the exporter speaks JSON). */
interface Receiver {
  readonly url: string;
  readonly posts: { contentType: string | undefined; body: OtlpTraces }[];
}

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  boolValue?: boolean;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes: { key: string; value: OtlpValue }[];
  events?: { name: string }[];
  status?: { code?: number };
}
interface OtlpTraces {
  resourceSpans: { resource: { attributes: { key: string; value: OtlpValue }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
}

const SERVER = 2;
const CLIENT = 3;

async function startReceiver(): Promise<Receiver> {
  const posts: Receiver['posts'] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    posts.push({ contentType: req.headers['content-type'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpTraces });
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, posts };
}

function spansOf(receiver: Receiver): OtlpSpan[] {
  return receiver.posts.flatMap((p) => p.body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)));
}

function attr(span: OtlpSpan, key: string): string | number | boolean | undefined {
  const v = span.attributes.find((a) => a.key === key)?.value;
  if (v === undefined) return undefined;
  if (v.intValue !== undefined) return Number(v.intValue);
  return v.stringValue ?? v.boolValue;
}

/** An SDK client of a local port carrying `connection` over the gateway's tunnel, as `sluice connect` opens it. */
async function tunnelTo(gw: TestGateway, connection: string): Promise<OpenAI> {
  return (await openLocalHttpTunnel(gw, connection)).openai();
}

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const messages = [{ role: 'user' as const, content: 'What is the status of order 7?' }];

describe('traces over OTLP/HTTP', () => {
  it('export one exchange span per SDK call (proxy and tunnel) with stage children and GenAI attributes, in the caller’s trace, flushed as the gateway closes', async () => {
    const receiver = await startReceiver();
    const gw = await gateways.start({
      config: { telemetry: { otlp_endpoint: receiver.url }, masking_profiles: { pii: { detectors: ['email'] } } },
      connections: ({ model }) => [modelConnection(model), modelConnection(model, { name: 'llm-masked', masking: ['pii'] })],
    });
    const token = await gw.token('alice');
    const proxy = (connection: string, headers: Record<string, string> = {}) =>
      new OpenAI({ baseURL: `${gw.url}/v1/proxy/${connection}/v1`, apiKey: token, maxRetries: 0, defaultHeaders: headers });

    // 1. a caller in a trace of its own, sampled, with vendor state
    const traced = await proxy('llm', { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`, tracestate: 'acme=t61rcWkgMzE' }).chat.completions.create({ model: 'demo-small', messages });
    // 2. a caller with a malformed traceparent: ignored, never refused
    const malformed = await proxy('llm', { traceparent: `00-${CALLER_TRACE.toUpperCase()}-${CALLER_SPAN}-01`, tracestate: 'acme=dropped' }).chat.completions.create({ model: 'demo-small', messages });
    // 3. masked: the demo model's answer carries an email address
    const masked = await proxy('llm-masked').chat.completions.create({ model: 'demo-large', messages });
    expect(masked.choices[0]!.message.content).toContain('[EMAIL]');
    // 4. through the tunnel, no trace context from the caller
    const tunneled = await (await tunnelTo(gw, 'llm')).chat.completions.create({ model: 'demo-small', messages });
    for (const answer of [traced, malformed, tunneled]) expect(answer.choices[0]!.message.content).toBeTruthy();

    // What the upstream heard: the gateway's span as parent, in the caller's trace when there was a valid one.
    const heard = gw.model.requests.filter((r) => r.path.endsWith('/chat/completions')).map((r) => r.headers);
    expect(heard).toHaveLength(4);
    const [up1, up2, up3, up4] = heard.map((h) => /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/.exec(String(h.traceparent)));
    expect(up1?.[1]).toBe(CALLER_TRACE);
    expect(up1?.[2]).not.toBe(CALLER_SPAN);
    expect(up1?.[3]).toBe('01');
    expect(heard[0]!.tracestate).toBe('acme=t61rcWkgMzE');
    // the malformed one started a new trace, and its tracestate (meaningless without it) went nowhere
    expect(up2?.[1]).toMatch(/^[0-9a-f]{32}$/);
    expect(up2?.[1]).not.toBe(CALLER_TRACE);
    expect(heard[1]!.tracestate).toBeUndefined();
    expect(up3).not.toBeNull();
    expect(up4).not.toBeNull();
    expect(new Set([up2![1], up3![1], up4![1]]).size).toBe(3);

    // Spans wait in the batch; closing the gateway (as a drain ends) exports them.
    expect(receiver.posts).toHaveLength(0);
    await gw.stopApp();
    expect(receiver.posts.length).toBeGreaterThan(0);
    for (const post of receiver.posts) expect(post.contentType).toContain('application/json');
    const service = receiver.posts[0]!.body.resourceSpans[0]!.resource.attributes.find((a) => a.key === 'service.name');
    expect(service?.value.stringValue).toBe('sluice');

    const spans = spansOf(receiver);
    const exchanges = spans.filter((s) => s.name === 'sluice.exchange');
    expect(exchanges).toHaveLength(4);
    const byUpstreamParent = (m: RegExpExecArray | null | undefined) => exchanges.find((s) => s.spanId === m![2])!;
    const [x1, x2, x3, x4] = [byUpstreamParent(up1), byUpstreamParent(up2), byUpstreamParent(up3), byUpstreamParent(up4)];
    const children = (x: OtlpSpan) => spans.filter((s) => s.parentSpanId === x.spanId && s.traceId === x.traceId);

    // 1: a SERVER span in the caller's trace, child of the caller's span
    expect(x1.traceId).toBe(CALLER_TRACE);
    expect(x1.parentSpanId).toBe(CALLER_SPAN);
    expect(x1.kind).toBe(SERVER);
    expect(attr(x1, 'sluice.connection')).toBe('llm');
    expect(attr(x1, 'sluice.via')).toBe('proxy');
    expect(attr(x1, 'sluice.decision')).toBe('allow');
    expect(attr(x1, 'sluice.session_id')).toMatch(/\S/);
    expect(attr(x1, 'http.request.method')).toBe('POST');
    expect(attr(x1, 'http.response.status_code')).toBe(200);
    expect(attr(x1, 'gen_ai.system')).toBe('openai');
    expect(attr(x1, 'gen_ai.operation.name')).toBe('chat');
    expect(attr(x1, 'gen_ai.request.model')).toBe('demo-small');
    expect(attr(x1, 'gen_ai.usage.input_tokens')).toBe(traced.usage!.prompt_tokens);
    expect(attr(x1, 'gen_ai.usage.output_tokens')).toBe(traced.usage!.completion_tokens);
    // no user id unless telemetry.per_user is set
    expect(attr(x1, 'enduser.id')).toBeUndefined();
    const stages1 = children(x1);
    const names1 = stages1.map((s) => s.name);
    expect(names1.filter((n) => n === 'sluice.recording')).toHaveLength(2);
    expect(names1).toEqual(expect.arrayContaining(['sluice.policy', 'sluice.upstream']));
    expect(names1).not.toContain('sluice.approval_wait');
    const upstream1 = stages1.find((s) => s.name === 'sluice.upstream')!;
    expect(upstream1.kind).toBe(CLIENT);
    expect(attr(upstream1, 'http.response.status_code')).toBe(200);
    // stages lie within the exchange
    for (const s of stages1) {
      expect(BigInt(s.startTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(x1.startTimeUnixNano));
      expect(BigInt(s.endTimeUnixNano)).toBeLessThanOrEqual(BigInt(x1.endTimeUnixNano));
    }

    // 2: a root span of a new trace
    expect(x2.parentSpanId ?? '').toBe('');
    expect(attr(x2, 'gen_ai.request.model')).toBe('demo-small');

    // 3: the masking stage, with counts by entity (never a value)
    expect(attr(x3, 'sluice.connection')).toBe('llm-masked');
    expect(attr(x3, 'gen_ai.request.model')).toBe('demo-large');
    const masking = children(x3).find((s) => s.name === 'sluice.masking');
    expect(masking).toBeDefined();
    expect(attr(masking!, 'sluice.masked.email')).toBeGreaterThanOrEqual(1);
    expect(JSON.stringify(spans)).not.toContain('jane.doe@example.com');

    // 4: through the tunnel
    expect(attr(x4, 'sluice.via')).toBe('tunnel');
    expect(attr(x4, 'gen_ai.usage.input_tokens')).toBe(tunneled.usage!.prompt_tokens);
    expect(attr(x4, 'gen_ai.request.model')).toBe('demo-small');
    expect(children(x4).map((s) => s.name)).toContain('sluice.upstream');
  });

  it('name the user with telemetry.per_user, and record a denial as the policy stage’s decision', async () => {
    const receiver = await startReceiver();
    const gw = await gateways.start({
      config: {
        telemetry: { otlp_endpoint: `${receiver.url}/`, per_user: true, service_name: 'edge-gateway' },
        policies: [{ name: 'no-denied-model', when: 'request.json.model == "demo-denied"', action: 'deny' }],
      },
    });
    const proxy = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: await gw.token('alice'), maxRetries: 0 });
    await proxy.chat.completions.create({ model: 'demo-small', messages });
    await expect(proxy.chat.completions.create({ model: 'demo-denied', messages })).rejects.toMatchObject({ status: 403 });
    await gw.stopApp();

    const service = receiver.posts[0]!.body.resourceSpans[0]!.resource.attributes.find((a) => a.key === 'service.name');
    expect(service?.value.stringValue).toBe('edge-gateway');
    const exchanges = spansOf(receiver).filter((s) => s.name === 'sluice.exchange');
    expect(exchanges).toHaveLength(2);
    for (const x of exchanges) expect(attr(x, 'enduser.id')).toBe('alice');
    const denied = exchanges.find((x) => attr(x, 'sluice.decision') === 'deny')!;
    expect(attr(denied, 'error.type')).toBe('ERR_POLICY_DENIED');
    expect(attr(denied, 'http.response.status_code')).toBe(403);
    const stages = spansOf(receiver).filter((s) => s.parentSpanId === denied.spanId);
    expect(stages.map((s) => s.name)).toContain('sluice.policy');
    expect(stages.map((s) => s.name)).not.toContain('sluice.upstream');
  });

  it('off by default: the collector hears nothing, and the caller’s traceparent and tracestate reach the upstream as sent', async () => {
    const receiver = await startReceiver();
    const gw = await gateways.start({});
    expect(gw.config.telemetry.otlp_endpoint).toBeUndefined();
    const traceparent = `00-${CALLER_TRACE}-${CALLER_SPAN}-01`;
    const proxy = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: await gw.token('alice'), maxRetries: 0, defaultHeaders: { traceparent, tracestate: 'acme=t61rcWkgMzE' } });
    await proxy.chat.completions.create({ model: 'demo-small', messages });
    const tunneled = await tunnelTo(gw, 'llm');
    await tunneled.chat.completions.create({ model: 'demo-small', messages }, { headers: { traceparent } });
    await gw.stopApp();

    const heard = gw.model.requests.filter((r) => r.path.endsWith('/chat/completions'));
    expect(heard).toHaveLength(2);
    for (const r of heard) expect(r.headers.traceparent).toBe(traceparent);
    expect(heard[0]!.headers.tracestate).toBe('acme=t61rcWkgMzE');
    expect(receiver.posts).toHaveLength(0);
  });
});
