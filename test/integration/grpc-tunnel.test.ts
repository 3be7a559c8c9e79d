/**
 * gRPC connections through the tunnel on the real gateway: a KServe v2 model server and a grpc-js client
 * with insecure local credentials, the client's bytes carried by a tunnel stream per local connection as
 * `sluice connect` carries them. Answers equal the model's own; refusals are gRPC statuses; the recording
 * holds every message.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { sessionEvents } from '../helpers/gateway-session-events.js';
import { gatewayFixture, until, type TestGateway, type TestGatewayOptions, type TestUser } from '../helpers/gateway.js';
import { openTunnelPort, testKserveClient, tritonConnection } from '../helpers/grpc-tunnel.js';
import { inferRequest, startKserveModel, STREAM_TOKENS, streamInfer, unary, type KserveModel, type KserveModelOptions } from '../helpers/kserve-model.js';

const gateways = gatewayFixture();

interface GrpcSetup {
  gw: TestGateway;
  model: KserveModel;
  /** A grpc-js client of the model itself. */
  direct: grpc.Client;
  /** A grpc-js client of the tunnel's local port. */
  client: grpc.Client;
  sessionId: string;
  /** Closes the tunnel and the gateway, so the session is sealed. */
  seal(): Promise<void>;
}

/** The model, a gateway with a `triton` connection to it (messages recorded raw unless `connection` says otherwise), a tunnel as `user` and a local port, and clients. */
async function setup(options: { user?: TestUser; model?: KserveModelOptions; connection?: Record<string, unknown>; gateway?: TestGatewayOptions } = {}): Promise<GrpcSetup> {
  const model = await startKserveModel(options.model);
  onTestFinished(() => model.close());
  const record = { record: { request_body: 'raw', response_body: 'raw' } };
  const gw = await gateways.start({ connections: () => [tritonConnection(model, { ...record, ...options.connection })], ...options.gateway });
  const port = await openTunnelPort(gw, { user: options.user });
  const direct = testKserveClient(model.address);
  const client = testKserveClient(port.address);
  return {
    gw,
    model,
    direct,
    client,
    sessionId: port.sessionId,
    async seal() {
      client.close();
      port.close();
      await gw.stopApp();
    },
  };
}

function messagesOf(events: RecordedEvent[], dir: 'up' | 'down'): RecordedEvent<'grpc.message'>[] {
  return events.filter((e): e is RecordedEvent<'grpc.message'> => e.type === 'grpc.message' && (e as RecordedEvent<'grpc.message'>).fields.dir === dir);
}

describe('grpc connections through the tunnel', () => {
  it('answers ModelInfer (BYTES and FP32 outputs) as the model does, and records each message decoded with its bytes', async () => {
    const s = await setup();
    const request = inferRequest('llama', 'hello tensor');
    const viaGateway = await unary(s.client, 'ModelInfer', request);
    const direct = await unary(s.direct, 'ModelInfer', request);
    expect(viaGateway).toEqual(direct);
    expect(viaGateway).toMatchObject({ ok: true, response: { model_name: 'llama', outputs: [{ name: 'text_output', datatype: 'BYTES' }, { name: 'scores', datatype: 'FP32' }] } });
    const outputs = (viaGateway as unknown as { response: { outputs: { contents: { bytes_contents: Buffer[]; fp32_contents: number[] } }[] } }).response.outputs;
    expect(outputs[0]!.contents.bytes_contents[0]!.toString()).toBe('HELLO TENSOR');
    expect(outputs[1]!.contents.fp32_contents).toEqual([0.5, 0.25, 0.125]);
    await s.seal();

    const { events, ok } = await sessionEvents(s.gw, s.sessionId);
    expect(ok).toBe(true);
    expect(events[0]).toMatchObject({ type: 'session.start', fields: { connection: { name: 'triton', type: 'grpc' } } });
    const request0 = events.find((e) => e.type === 'exchange.request')!;
    expect(request0.fields).toMatchObject({ method: 'POST', path: '/inference.GRPCInferenceService/ModelInfer', decision: { action: 'allow' } });
    const [up] = messagesOf(events, 'up');
    expect(up!.fields).toMatchObject({ index: 0, json: { model_name: 'llama', inputs: [{ name: 'text_input', datatype: 'BYTES', contents: { bytes_contents: [Buffer.from('hello tensor').toString('base64')] } }] } });
    expect(up!.payload?.length).toBe(up!.fields.bytes);
    const [down] = messagesOf(events, 'down');
    expect(down!.fields).toMatchObject({ index: 0, json: { model_name: 'llama', outputs: [{ name: 'text_output' }, { name: 'scores', contents: { fp32_contents: [0.5, 0.25, 0.125] } }] } });
    const end = events.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!;
    expect(end.fields).toMatchObject({ status: 200, complete: true, trailers: { 'grpc-status': '0' } });
  });

  it('streams ModelStreamInfer token by token as the model does, and records all 50 messages in order', async () => {
    const s = await setup();
    const request = inferRequest('llama', 'tell me a story');
    const viaGateway = await streamInfer(s.client, request);
    const direct = await streamInfer(s.direct, request);
    expect(viaGateway.code).toBe(grpc.status.OK);
    expect(viaGateway.messages).toHaveLength(STREAM_TOKENS.length);
    expect(viaGateway.messages).toEqual(direct.messages);
    await s.seal();

    const { events, ok } = await sessionEvents(s.gw, s.sessionId);
    expect(ok).toBe(true);
    const down = messagesOf(events, 'down');
    expect(down.map((m) => m.fields.index)).toEqual(STREAM_TOKENS.map((_, i) => i));
    const tokens = down.map((m) => {
      const json = m.fields.json as { infer_response: { outputs: { contents: { bytes_contents: string[] } }[] } };
      return Buffer.from(json.infer_response.outputs[0]!.contents.bytes_contents[0]!, 'base64').toString();
    });
    expect(tokens).toEqual(STREAM_TOKENS);
    expect(messagesOf(events, 'up')).toHaveLength(1);
  });

  it("sends the connection's metadata in place of the caller's credentials, with the request id", async () => {
    const s = await setup({ connection: { metadata: { authorization: 'Bearer upstream-only' } } });
    const metadata = new grpc.Metadata();
    metadata.set('authorization', 'Bearer the-callers-own');
    metadata.set('x-trace', 'abc');
    const answer = await new Promise<grpc.ServiceError | null>((resolve) =>
      (s.client as unknown as { ModelInfer: Function }).ModelInfer(inferRequest('llama', 'hi'), metadata, (err: grpc.ServiceError | null) => resolve(err)),
    );
    expect(answer).toBeNull();
    expect(s.model.calls[0]!.metadata).toMatchObject({ authorization: 'Bearer upstream-only', 'x-trace': 'abc', 'x-request-id': expect.stringMatching(/^req_/) });
  });

  it("drops the caller's address, forwarding, override and x-sluice- metadata before the upstream, as on HTTP", async () => {
    const s = await setup();
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries({ 'x-real-ip': '10.9.9.9', forwarded: 'for=10.9.9.9', 'x-forwarded-host': 'admin.internal', 'x-forwarded-proto': 'https', 'x-sluice-resend-of': 'req_x', 'x-http-method-override': 'DELETE', 'x-trace': 'abc' })) {
      metadata.set(k, v);
    }
    const answer = await new Promise<grpc.ServiceError | null>((resolve) =>
      (s.client as unknown as { ModelInfer: Function }).ModelInfer(inferRequest('llama', 'hi'), metadata, (err: grpc.ServiceError | null) => resolve(err)),
    );
    expect(answer).toBeNull();
    const seen = s.model.calls[0]!.metadata;
    expect(seen).toMatchObject({ 'x-trace': 'abc' });
    for (const name of ['x-real-ip', 'forwarded', 'x-forwarded-host', 'x-forwarded-proto', 'x-sluice-resend-of', 'x-http-method-override']) expect(seen, name).not.toHaveProperty(name);
    expect(seen['x-forwarded-for']).not.toContain('10.9.9.9');
  });

  it("keeps the upstream's credentials in its trailers from the caller, as on HTTP", async () => {
    const s = await setup({ model: { answerMetadata: { authorization: 'Bearer upstream-secret', 'set-cookie': 'session=upstream', 'x-model-note': 'kept' } } });
    const trailers = await new Promise<Record<string, unknown>>((resolve) => {
      const call = (s.client as unknown as { ModelInfer: Function }).ModelInfer(inferRequest('llama', 'hi'), () => undefined);
      (call as grpc.ClientUnaryCall).on('status', (status: grpc.StatusObject) => resolve(status.metadata.getMap()));
    });
    expect(trailers).toMatchObject({ 'x-model-note': 'kept' });
    expect(trailers).not.toHaveProperty('authorization');
    expect(trailers).not.toHaveProperty('set-cookie');
  });

  it("passes the upstream's own error status and message through, and records them", async () => {
    const s = await setup();
    const answer = await unary(s.client, 'ModelInfer', inferRequest('broken', 'x'));
    expect(answer).toEqual({ ok: false, code: grpc.status.FAILED_PRECONDITION, details: 'model "broken" is not loaded' });
    await s.seal();
    const { events } = await sessionEvents(s.gw, s.sessionId);
    const end = events.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!;
    expect(end.fields.trailers).toMatchObject({ 'grpc-status': String(grpc.status.FAILED_PRECONDITION), 'grpc-message': expect.stringContaining('broken') });
  });
});

describe('refusals on grpc connections are gRPC statuses, recorded', () => {
  const denyGpt = {
    policies: [
      {
        name: 'no-frontier-models',
        when: 'connection.name == "triton" && request.grpc.method == "ModelInfer" && request.json.model_name.startsWith("gpt-")',
        action: 'deny',
        message: 'Frontier models are not served on triton',
      },
    ],
  };

  it('denies by a CEL rule on request.json.model_name with PERMISSION_DENIED and the rule\'s message; the model never sees the call', async () => {
    const s = await setup({ gateway: { config: denyGpt } });
    const denied = await unary(s.client, 'ModelInfer', inferRequest('gpt-5', 'secret plans'));
    expect(denied).toEqual({ ok: false, code: grpc.status.PERMISSION_DENIED, details: 'Frontier models are not served on triton' });
    // The same rule lets another model through, on the same connection.
    expect(await unary(s.client, 'ModelInfer', inferRequest('llama', 'hi'))).toMatchObject({ ok: true });
    expect(s.model.calls.map((c) => (c.requests[0] as { model_name: string }).model_name)).toEqual(['llama']);
    await s.seal();

    const { events, ok } = await sessionEvents(s.gw, s.sessionId);
    expect(ok).toBe(true);
    expect(events.find((e) => e.type === 'policy.decision')!.fields).toMatchObject({ action: 'deny', rule: 'no-frontier-models' });
    const error = events.find((e): e is RecordedEvent<'exchange.error'> => e.type === 'exchange.error')!;
    expect(error.fields).toMatchObject({ code: 'ERR_POLICY_DENIED', message: 'Frontier models are not served on triton' });
    const ends = events.filter((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end');
    expect(ends[0]!.fields.trailers).toMatchObject({ 'grpc-status': String(grpc.status.PERMISSION_DENIED) });
  });

  it('judges request.grpc.service, .method and .metadata (lower-case keys, -bin left out)', async () => {
    const s = await setup({
      gateway: {
        config: {
          policies: [
            {
              name: 'team-header',
              when: 'request.grpc.service == "inference.GRPCInferenceService" && request.grpc.metadata["x-team"] != "search" && !("x-blob-bin" in request.grpc.metadata)',
              action: 'deny',
              message: 'Only the search team, without binary metadata',
            },
          ],
        },
      },
    });
    const call = (metadata: grpc.Metadata) =>
      new Promise<{ code: number; details: string }>((resolve) =>
        (s.client as unknown as { ServerLive: Function }).ServerLive({}, metadata, (err: grpc.ServiceError | null) => resolve(err === null ? { code: 0, details: '' } : { code: err.code, details: err.details })),
      );
    const search = new grpc.Metadata();
    search.set('X-Team', 'search');
    expect(await call(search)).toEqual({ code: grpc.status.OK, details: '' });
    const other = new grpc.Metadata();
    other.set('x-team', 'ads');
    other.set('x-blob-bin', Buffer.from([1, 2, 3]));
    expect(await call(other)).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'Only the search team, without binary metadata' });
  });

  it('answers UNAVAILABLE when the upstream is down', async () => {
    const s = await setup();
    await s.model.close();
    const answer = await unary(s.client, 'ModelInfer', inferRequest('llama', 'hi'));
    expect(answer).toMatchObject({ ok: false, code: grpc.status.UNAVAILABLE, details: expect.stringContaining('triton') });
    await s.seal();
    const { events } = await sessionEvents(s.gw, s.sessionId);
    expect(events.find((e) => e.type === 'exchange.error')!.fields).toMatchObject({ code: 'ERR_UPSTREAM_UNAVAILABLE' });
  });

  it("passes the client's cancellation upstream, and records the call as incomplete", async () => {
    const s = await setup({ model: { tokenDelayMs: 20 } });
    const call = (s.client as unknown as { ModelStreamInfer(): grpc.ClientDuplexStream<unknown, unknown> }).ModelStreamInfer();
    let received = 0;
    call.on('data', () => {
      received++;
      if (received === 3) call.cancel();
    });
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('error', () => undefined);
      call.on('status', resolve);
      call.write(inferRequest('llama', 'a long story'));
    });
    expect(status.code).toBe(grpc.status.CANCELLED);
    await until(() => s.model.calls[0]?.cancelled === true, 'the model to see the cancellation');
    await until(() => s.model.calls.length === 1, 'one call');
    await s.seal();
    const { events, ok } = await sessionEvents(s.gw, s.sessionId);
    expect(ok).toBe(true);
    expect(events.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!.fields).toMatchObject({ complete: false });
    expect(messagesOf(events, 'down').length).toBeLessThan(STREAM_TOKENS.length);
  });

  it('ends a call past its deadline with DEADLINE_EXCEEDED and cancels it upstream', async () => {
    const s = await setup({ model: { tokenDelayMs: 50 } });
    const deadline = Date.now() + 300;
    const call = (s.client as unknown as { ModelStreamInfer(m: grpc.Metadata, o: grpc.CallOptions): grpc.ClientDuplexStream<unknown, unknown> }).ModelStreamInfer(new grpc.Metadata(), {
      deadline,
    });
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('data', () => undefined);
      call.on('error', () => undefined);
      call.on('status', resolve);
      call.write(inferRequest('llama', 'a long story'));
    });
    expect(status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await until(() => s.model.calls[0]?.cancelled === true, 'the model to see the call cancelled');
    // The deadline went upstream as the time left of it, so the model knew it too.
    expect(s.model.calls[0]!.deadline).toBeLessThanOrEqual(deadline + 50);
  });
});

