/**
 * The gRPC protocol on the pipeline without a gateway around it: each accepted local socket is handed to
 * it as a tunnel stream would be, so a grpc-js client talks to it directly. Refusals at every stage are
 * gRPC statuses with a message (never an HTTP error), each on the record.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, onTestFinished } from 'vitest';
import { SluiceError } from '../../shared/errors.js';
import { connectionSchema, type GrpcConnectionConfig } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { createExchangeHandler, type ExchangeHandlerOptions } from '../../server/pipeline/run-exchange.js';
import { createGrpcProtocol } from '../../server/protocols/grpc.js';
import { recordedEvents, type RecordedEvent, type RecordedEventsOptions } from '../helpers/recorded-events.js';
import { validateConfig } from '../../server/config/load.js';
import { loadMaskingProfiles } from '../../server/masking/load-profiles.js';
import { createMaskingStage } from '../../server/masking/masking-stage.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { configProblems } from '../helpers/config-problems.js';
import { InferenceClient, inferRequest, kserveClient, startKserveModel, streamInfer, unary, type InferRequest } from '../helpers/kserve-model.js';

const alice: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const dave: Principal = { ...alice, sub: 'dave', groups: ['interns'] };

function grpcConnection(upstream: string, more: Record<string, unknown> = {}): GrpcConnectionConfig {
  return connectionSchema.parse({ name: 'triton', type: 'grpc', upstream, allow_groups: ['ml-eng'], ...more }) as GrpcConnectionConfig;
}

/** The tunnel's stand-in: a local port whose sockets go to the gRPC protocol as `principal`'s streams; returns a client of it. */
async function gateway(
  upstream: string,
  o: { principal?: Principal; connection?: Record<string, unknown>; stages?: ExchangeHandlerOptions; recording?: RecordedEventsOptions } = {},
): Promise<{ client: grpc.Client; events: RecordedEvent[] }> {
  const exchange = createExchangeHandler(o.stages);
  const protocol = createGrpcProtocol({ exchange });
  const { recorder, events } = recordedEvents(o.recording);
  const connection = grpcConnection(upstream, o.connection);
  const server: Server = createServer((socket) =>
    protocol.handle(socket, { principal: o.principal ?? alice, connection, session: { id: 'ses_test', recorder }, clientAddress: '127.0.0.1' }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = kserveClient(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  onTestFinished(async () => {
    client.close();
    await protocol.close();
    await exchange.close();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { client, events };
}

async function model(): Promise<string> {
  const m = await startKserveModel();
  onTestFinished(() => m.close());
  return `grpc://${m.address}`;
}

describe('grpc protocol refusals', () => {
  it("refuses a caller outside the connection's groups with PERMISSION_DENIED, recorded before the answer", async () => {
    const { client, events } = await gateway(await model(), { principal: dave });
    const answer = await unary(client, 'ModelInfer', inferRequest('llama', 'hi'));
    expect(answer).toEqual({ ok: false, code: grpc.status.PERMISSION_DENIED, details: 'You are not allowed to use connection "triton"' });
    expect(events.find((e) => e.type === 'exchange.error')).toMatchObject({
      code: 'ERR_CONNECTION_FORBIDDEN',
      end: { status: 200, complete: true, trailers: { 'grpc-status': String(grpc.status.PERMISSION_DENIED) } },
    });
  });

  it('answers UNAVAILABLE, and forwards nothing, when the recording cannot take the request', async () => {
    const m = await startKserveModel();
    onTestFinished(() => m.close());
    const { client } = await gateway(`grpc://${m.address}`, {
      recording: {
        onRecord: (e) => {
          if (e.type === 'exchange.request') throw new SluiceError('ERR_RECORDING_UNAVAILABLE', { message: 'The disk is full' });
        },
      },
    });
    const answer = await unary(client, 'ModelInfer', inferRequest('llama', 'hi'));
    expect(answer).toEqual({ ok: false, code: grpc.status.UNAVAILABLE, details: 'The disk is full' });
    expect(m.calls).toHaveLength(0);
  });

  it('ends a call whose message exceeds max_message with RESOURCE_EXHAUSTED', async () => {
    const m = await startKserveModel();
    onTestFinished(() => m.close());
    const { client } = await gateway(`grpc://${m.address}`, { connection: { max_message: 1024 } });
    const answer = await unary(client, 'ModelInfer', inferRequest('llama', 'x'.repeat(4096)));
    expect(answer).toMatchObject({ ok: false, code: grpc.status.RESOURCE_EXHAUSTED, details: expect.stringContaining('1024') });
    expect(m.calls).toHaveLength(0);
  });

  it('refuses a rule that reads request.json on a method the descriptors do not define (fail closed)', async () => {
    const { client } = await gateway(await model(), {
      connection: { descriptors: ['kserve-v2'] },
      stages: {
        policy: {
          // A rule about the body: it reads the body, which must be judgeable.
          decide: async (_exchange, readBody) => {
            await readBody!();
            return { action: 'allow' };
          },
        },
      },
    });
    const unknown = new grpc.Client(`${(client.getChannel().getTarget() as string).replace(/^dns:/, '')}`, grpc.credentials.createInsecure());
    onTestFinished(() => unknown.close());
    const status = await new Promise<grpc.ServiceError | null>((resolve) =>
      unknown.makeUnaryRequest('/other.Service/Method', (b: Buffer) => b, (b: Buffer) => b, Buffer.from([8, 1]), (err) => resolve(err)),
    );
    expect(status?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status?.details).toMatch(/not in the connection's descriptors/);
  });

  it('refuses a second request message on a unary method with INVALID_ARGUMENT, recorded', async () => {
    const m = await startKserveModel();
    onTestFinished(() => m.close());
    const { client, events } = await gateway(`grpc://${m.address}`);
    const serialize = InferenceClient.service.ModelInfer!.requestSerialize as (r: InferRequest) => Buffer;
    // A client-streaming call on a unary path: the first message is what policy judged, the second is not.
    const status = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.makeClientStreamRequest('/inference.GRPCInferenceService/ModelInfer', (b: Buffer) => b, (b: Buffer) => b, (err) => resolve(err));
      call.write(serialize(inferRequest('llama', 'judged')));
      call.write(serialize(inferRequest('gpt-5', 'never judged')));
      call.end();
    });
    expect(status?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status?.details).toMatch(/exactly one request message/);
    expect(m.calls).toHaveLength(0);
    expect(events.find((e) => e.type === 'exchange.error')).toMatchObject({ code: 'ERR_BAD_REQUEST' });
  });

  it('refuses a client-streaming call when policy reads the body, rather than judge its first message only', async () => {
    const m = await startKserveModel();
    onTestFinished(() => m.close());
    const { client, events } = await gateway(`grpc://${m.address}`, {
      stages: {
        policy: {
          decide: async (_exchange, readBody) => {
            await readBody!();
            return { action: 'allow' };
          },
        },
      },
    });
    const answer = await streamInfer(client, inferRequest('llama', 'hi'));
    expect(answer.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(answer.details).toMatch(/client-streaming call/);
    expect(m.calls).toHaveLength(0);
    expect(events.find((e) => e.type === 'exchange.error')).toMatchObject({ code: 'ERR_BODY_UNREADABLE' });
  });

  it('lets a client-streaming call through when no rule reads the body', async () => {
    const m = await startKserveModel();
    onTestFinished(() => m.close());
    const { client } = await gateway(`grpc://${m.address}`, { stages: { policy: { decide: async () => ({ action: 'allow' }) } } });
    const answer = await streamInfer(client, inferRequest('llama', 'hi'));
    expect(answer.code).toBe(grpc.status.OK);
  });

  it("masks the answer of a call whose policy asks for a profile (mask:), on a connection without profiles of its own", async () => {
    const m = await startKserveModel();
    onTestFinished(() => m.close());
    const profiles = await loadMaskingProfiles({ masking_profiles: { pii: maskingProfileSchema.parse({ detectors: ['email'] }) }, masking: {} });
    const { client } = await gateway(`grpc://${m.address}`, {
      stages: { masking: createMaskingStage({ profiles }), policy: { decide: async () => ({ action: 'allow', rule: 'mask-pii', mask: ['pii'] }) } },
    });
    const answer = await unary(client, 'ModelInfer', inferRequest('llama', 'alice@example.com'));
    expect(answer).toMatchObject({ ok: true });
    const outputs = (answer as unknown as { response: { outputs: { contents: { bytes_contents: Buffer[] } }[] } }).response.outputs;
    expect(outputs[0]!.contents.bytes_contents.map(String)).toEqual(['[EMAIL]']);
    expect(m.calls).toHaveLength(1);
  });

  for (const readsBody of [false, true]) {
    it(`ends a call whose oversized message arrived before ${readsBody ? 'policy read it' : 'the upstream call'} with RESOURCE_EXHAUSTED, without waiting`, async () => {
      const m = await startKserveModel();
      onTestFinished(() => m.close());
      const { client } = await gateway(`grpc://${m.address}`, {
        connection: { max_message: 1024 },
        stages: {
          policy: {
            decide: async (_exchange, readBody) => {
              // The message is refused by the splitter while policy is still busy.
              await new Promise((r) => setTimeout(r, 300));
              if (readsBody) await readBody!();
              return { action: 'allow' };
            },
          },
        },
      });
      const answer = await unary(client, 'ModelInfer', inferRequest('llama', 'x'.repeat(4096)), { deadline: Date.now() + 10_000 });
      expect(answer).toMatchObject({ ok: false, code: grpc.status.RESOURCE_EXHAUSTED, details: expect.stringContaining('1024') });
      expect(m.calls).toHaveLength(0);
    });
  }
});

describe('grpc connection configuration', () => {
  const raw = (connection: Record<string, unknown>) => ({
    identity: { issuer: 'https://idp.example', audience: 'urn:sluice:gateway', cli_client_id: 'cli' },
    masking_profiles: { pii: { detectors: ['email'] } },
    connections: [{ name: 'triton', type: 'grpc', upstream: 'grpc://127.0.0.1:9', allow_groups: ['g'], ...connection }],
  });

  it('accepts masking profiles and unknown_methods on a grpc connection', () => {
    const config = validateConfig(raw({ masking: ['pii'], unknown_methods: 'pass' }));
    expect(config.connections[0]).toMatchObject({ masking: ['pii'], unknown_methods: 'pass' });
  });

  it('refuses an unknown_methods value other than refuse or pass, naming the key', () => {
    expect(configProblems(raw({ unknown_methods: 'mask' }))).toEqual([expect.stringMatching(/^connections\[0\]\.unknown_methods/)]);
  });
});
