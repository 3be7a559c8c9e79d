/**
 * Masking of gRPC messages through the tunnel on the real gateway: a KServe v2 model written here answers
 * with PII in `bytes_contents`, in raw BYTES tensors and split across streamed token messages; a grpc-js
 * client sees it masked, the recording keeps the masked messages, FP32 tensors pass untouched, and
 * everything else equals the model's own answer.
 */
import { once } from 'node:events';
import { createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, onTestFinished } from 'vitest';
import { joinBytesTensor, splitBytesTensor } from '../../server/masking/grpc-bytes-tensor.js';
import { loadGrpcDescriptors } from '../../server/protocols/grpc/grpc-descriptors.js';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { sessionEvents } from '../helpers/gateway-session-events.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { openTunnelPort, testKserveClient, tritonConnection } from '../helpers/grpc-tunnel.js';
import { InferenceClient, inferRequest, streamInfer, unary, type InferRequest } from '../helpers/kserve-model.js';

const gateways = gatewayFixture();

const FP32 = [0.5, 0.25, 0.125];

function fp32Raw(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}

/** What the model written here answers. */
interface ModelScript {
  /** ModelInfer's BYTES output, in `bytes_contents` (or in `raw_output_contents` with `raw`). */
  readonly texts?: readonly string[];
  readonly raw?: boolean;
  /** ModelStreamInfer's tokens, one message each. */
  readonly tokens?: readonly string[];
  /** Bytes ModelInfer answers with instead of a ModelInferResponse. */
  readonly garbage?: Buffer;
  /** The model (on node:http2) answers ModelInfer with a gzip-compressed message. */
  readonly gzip?: boolean;
}

/** grpc-js's number for gzip in `grpc.default_compression_algorithm`. */
const GZIP = 2;

const kserve = loadGrpcDescriptors(['kserve-v2'], process.cwd());
const modelInfer = kserve.method('/inference.GRPCInferenceService/ModelInfer')!;

/**
 * A model that answers ModelInfer with one gzip-compressed message (grpc-js servers do not compress their
 * answers), written on node:http2 as the protocol lays it out.
 */
async function startGzipModel(texts: readonly string[]): Promise<{ address: string; calls: string[] }> {
  const calls: string[] = [];
  const server = createHttp2Server();
  server.on('stream', (stream, headers) => {
    calls.push(String(headers[':path']));
    stream.on('data', () => undefined);
    stream.on('end', () => {
      const type = modelInfer.responseType;
      const message = type.encode(
        type.fromObject({
          model_name: 'llama',
          outputs: [
            { name: 'text_output', datatype: 'BYTES', shape: [texts.length], contents: { bytes_contents: texts.map((t) => Buffer.from(t)) } },
            { name: 'scores', datatype: 'FP32', shape: [3], contents: { fp32_contents: FP32 } },
          ],
        }),
      ).finish();
      const payload = gzipSync(message);
      const frame = Buffer.alloc(5 + payload.length);
      frame[0] = 1;
      frame.writeUInt32BE(payload.length, 1);
      payload.copy(frame, 5);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-encoding': 'gzip' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => void server.close());
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, calls };
}

/** A KServe v2 model answering as `script` says; its address. */
async function startModel(script: ModelScript): Promise<{ address: string; calls: string[] }> {
  const calls: string[] = [];
  const server = new grpc.Server();
  const service = { ...InferenceClient.service };
  if (script.garbage !== undefined) service.ModelInfer = { ...service.ModelInfer!, responseSerialize: () => script.garbage! };
  server.addService(service, {
    ModelInfer: (call: grpc.ServerUnaryCall<InferRequest, unknown>, done: grpc.sendUnaryData<unknown>) => {
      calls.push('ModelInfer');
      const bytes = (script.texts ?? []).map((t) => Buffer.from(t));
      const outputs = script.raw
        ? [
            { name: 'text_output', datatype: 'BYTES', shape: [bytes.length] },
            { name: 'scores', datatype: 'FP32', shape: [3] },
          ]
        : [
            { name: 'text_output', datatype: 'BYTES', shape: [bytes.length], contents: { bytes_contents: bytes } },
            { name: 'scores', datatype: 'FP32', shape: [3], contents: { fp32_contents: FP32 } },
          ];
      done(null, {
        model_name: call.request.model_name,
        model_version: '1',
        id: call.request.id ?? '',
        outputs,
        raw_output_contents: script.raw ? [joinBytesTensor(bytes), fp32Raw(FP32)] : [],
      });
    },
    ModelStreamInfer: (call: grpc.ServerDuplexStream<InferRequest, unknown>) => {
      calls.push('ModelStreamInfer');
      call.on('data', (request: InferRequest) => {
        for (const token of script.tokens ?? []) {
          call.write({ error_message: '', infer_response: { model_name: request.model_name, id: request.id ?? '', outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from(token)] } }] } });
        }
      });
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  onTestFinished(() => void server.forceShutdown());
  return { address: `127.0.0.1:${port}`, calls };
}

interface Setup {
  gw: TestGateway;
  client: grpc.Client;
  direct: grpc.Client;
  sessionId: string;
  calls: string[];
  seal(): Promise<void>;
}

/** The model, a gateway with a `triton` connection masking `pii` (emails, `api_key` fields), a tunnel and clients. */
async function setup(script: ModelScript, connection: Record<string, unknown> = {}, clientOptions: grpc.ChannelOptions = {}): Promise<Setup> {
  const model = script.gzip ? await startGzipModel(script.texts ?? []) : await startModel(script);
  const gw = await gateways.start({
    connections: () => [
      tritonConnection(model, { masking: ['pii'], record: { request_body: 'raw', response_body: 'masked' }, ...connection }),
    ],
    config: { masking_profiles: { pii: { detectors: ['email'], json_keys: ['api_key'] } } },
  });
  const port = await openTunnelPort(gw);
  const client = testKserveClient(port.address, clientOptions);
  const direct = testKserveClient(model.address);
  return {
    gw,
    client,
    direct,
    calls: model.calls,
    sessionId: port.sessionId,
    async seal() {
      client.close();
      port.close();
      await gw.stopApp();
    },
  };
}

function downMessages(events: RecordedEvent[]): RecordedEvent<'grpc.message'>[] {
  return events.filter((e): e is RecordedEvent<'grpc.message'> => e.type === 'grpc.message' && (e as RecordedEvent<'grpc.message'>).fields.dir === 'down');
}

type Outputs = { name: string; contents?: { bytes_contents: Buffer[]; fp32_contents: number[] } }[];

describe('masking gRPC messages', () => {
  it('masks an email in bytes_contents, keeps FP32 outputs and everything else as the model answered, and records the masked message', async () => {
    const s = await setup({ texts: ['mail jane.doe@example.com now', 'nothing here'] });
    const request = inferRequest('llama', 'hi');
    const via = await unary(s.client, 'ModelInfer', request);
    const direct = await unary(s.direct, 'ModelInfer', request);
    expect(via.ok).toBe(true);
    const outputs = (via as unknown as { response: { outputs: Outputs } }).response.outputs;
    expect(outputs[0]!.contents!.bytes_contents.map(String)).toEqual(['mail [EMAIL] now', 'nothing here']);
    expect(outputs[1]!.contents!.fp32_contents).toEqual(FP32);
    // Apart from the masked element, the answer is the model's own.
    (direct as unknown as { response: { outputs: Outputs } }).response.outputs[0]!.contents!.bytes_contents[0] = Buffer.from('mail [EMAIL] now');
    expect(via).toEqual(direct);
    await s.seal();

    const { events, ok } = await sessionEvents(s.gw, s.sessionId);
    expect(ok).toBe(true);
    const [down] = downMessages(events);
    expect(down!.payload!.includes('jane.doe')).toBe(false);
    expect(down!.payload!.includes('mail [EMAIL] now')).toBe(true);
    const json = down!.fields.json as { outputs: { contents: { bytes_contents: string[] } }[] };
    expect(Buffer.from(json.outputs[0]!.contents.bytes_contents[0]!, 'base64').toString()).toBe('mail [EMAIL] now');
    const end = events.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!;
    expect(end.fields).toMatchObject({ complete: true, trailers: { 'grpc-status': '0' } });
    expect(events.find((e) => e.type === 'masking.summary')?.fields).toMatchObject({ findings: [{ entity: 'email', rule: 'detector:email', count: 1 }] });
    expect(JSON.stringify(events)).not.toContain('jane.doe');
  });

  it('masks raw_output_contents of a BYTES output element by element, rewriting the lengths, and leaves the FP32 raw tensor byte for byte', async () => {
    const s = await setup({ texts: ['to jane.doe@example.com', 'é ok'], raw: true });
    const via = await unary(s.client, 'ModelInfer', inferRequest('llama', 'hi'));
    expect(via.ok).toBe(true);
    const raw = (via as unknown as { response: { raw_output_contents: Buffer[] } }).response.raw_output_contents;
    expect(splitBytesTensor(raw[0]!)!.map(String)).toEqual(['to [EMAIL]', 'é ok']);
    expect(raw[1]!.equals(fp32Raw(FP32))).toBe(true);
    await s.seal();
    const { events } = await sessionEvents(s.gw, s.sessionId);
    expect(downMessages(events)[0]!.payload!.includes('jane.doe')).toBe(false);
    expect(JSON.stringify(events)).not.toContain(Buffer.from('jane.doe@example.com').toString('base64').slice(0, 12));
  });

  it('masks an email split over two streamed token messages: no part of it reaches the client or the recording', async () => {
    const tokens = ['Write ', 'to ', 'jane.doe@exa', 'mple.com', ' today', ' please'];
    const s = await setup({ tokens });
    const answer = await streamInfer(s.client, inferRequest('llama', 'story'));
    expect(answer.code).toBe(grpc.status.OK);
    const texts = answer.messages.map((m) => {
      const outputs = (m as { infer_response: { outputs: Outputs } }).infer_response.outputs;
      return outputs[0]!.contents!.bytes_contents.map(String).join('');
    });
    expect(texts.join('')).toBe('Write to [EMAIL] today please');
    for (const t of texts) expect(t).not.toMatch(/jane|doe@|exa|mple\.com/);
    // Every message still reaches the client (tokens held back leave their message empty), plus none or one carrying the held tail.
    expect(answer.messages.length).toBeGreaterThanOrEqual(tokens.length);
    await s.seal();
    const { events, ok } = await sessionEvents(s.gw, s.sessionId);
    expect(ok).toBe(true);
    for (const m of downMessages(events)) expect(m.payload!.toString('latin1')).not.toMatch(/jane|doe@|exa|mple\.com/);
    expect(JSON.stringify(events)).not.toMatch(/jane|doe@/);
  });

  it('refuses a message that cannot be decoded with INTERNAL, recorded, when masking applies', async () => {
    const s = await setup({ texts: ['x'], garbage: Buffer.from([0x0a, 0xff, 0xff, 0xff]) });
    const via = await unary(s.client, 'ModelInfer', inferRequest('llama', 'hi'));
    expect(via).toMatchObject({ ok: false, code: grpc.status.INTERNAL, details: expect.stringContaining('cannot be masked') });
    await s.seal();
    const { events } = await sessionEvents(s.gw, s.sessionId);
    expect(events.find((e) => e.type === 'exchange.error')?.fields).toMatchObject({ code: 'ERR_MASKING_BLOCKED' });
  });

  it('passes (and records raw) a message that cannot be decoded when no masking applies', async () => {
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff]);
    const s = await setup({ texts: ['x'], garbage }, { masking: [], record: { request_body: 'raw', response_body: 'raw' } });
    const raw = await new Promise<Buffer>((resolve, reject) =>
      s.client.makeUnaryRequest('/inference.GRPCInferenceService/ModelInfer', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (err, value) => (err ? reject(err) : resolve(value!))),
    );
    expect(raw.equals(garbage)).toBe(true);
    await s.seal();
    const { events } = await sessionEvents(s.gw, s.sessionId);
    expect(downMessages(events)[0]!.payload!.equals(garbage)).toBe(true);
  });

  it('refuses methods the descriptors do not define with UNIMPLEMENTED when masking applies, and forwards them with unknown_methods: pass', async () => {
    const call = (client: grpc.Client) =>
      new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest('/inference.GRPCInferenceService/Unlisted', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (err) => resolve(err)),
      );
    const refused = await setup({ texts: [] });
    const err = await call(refused.client);
    expect(err).toMatchObject({ code: grpc.status.UNIMPLEMENTED, details: expect.stringContaining('is not a method of the descriptors of connection "triton"') });
    expect(refused.calls).toEqual([]);
    await refused.seal();
    const { events } = await sessionEvents(refused.gw, refused.sessionId);
    expect(events.find((e) => e.type === 'exchange.error')?.fields).toMatchObject({ code: 'ERR_GRPC_METHOD_UNKNOWN' });

    const passed = await setup({ texts: [] }, { unknown_methods: 'pass' });
    const upstreamsOwn = await call(passed.client);
    // grpc-js's own answer for a method it does not serve: the call reached the model.
    expect(upstreamsOwn).toMatchObject({ code: grpc.status.UNIMPLEMENTED, details: expect.not.stringContaining('descriptors') });
  });

  it('decodes gzip-compressed messages both ways: the answer is masked and sent uncompressed, and the recording holds both as JSON', async () => {
    const s = await setup({ texts: ['mail jane.doe@example.com now'], gzip: true }, { record: { request_body: 'raw', response_body: 'raw' } }, { 'grpc.default_compression_algorithm': GZIP });
    const via = await unary(s.client, 'ModelInfer', inferRequest('llama', 'hello gzip'));
    expect(via.ok).toBe(true);
    const outputs = (via as unknown as { response: { outputs: Outputs } }).response.outputs;
    expect(outputs[0]!.contents!.bytes_contents.map(String)).toEqual(['mail [EMAIL] now']);
    expect(outputs[1]!.contents!.fp32_contents).toEqual(FP32);
    await s.seal();
    const { events } = await sessionEvents(s.gw, s.sessionId);
    const up = events.find((e): e is RecordedEvent<'grpc.message'> => e.type === 'grpc.message' && (e as RecordedEvent<'grpc.message'>).fields.dir === 'up')!;
    expect(up.fields).toMatchObject({ compressed: true, json: { model_name: 'llama', inputs: [{ contents: { bytes_contents: [Buffer.from('hello gzip').toString('base64')] } }] } });
    const response = events.find((e) => e.type === 'exchange.response')!;
    expect(response.fields).toMatchObject({ headers: { 'grpc-encoding': 'gzip' } });
    const [down] = downMessages(events);
    expect(down!.fields.compressed).toBeUndefined();
    expect(down!.fields.json).toMatchObject({ outputs: [{ contents: { bytes_contents: [Buffer.from('mail [EMAIL] now').toString('base64')] } }, { contents: { fp32_contents: FP32 } }] });
  });

  it('records a gzip-compressed answer as JSON when no masking applies, passing it compressed as sent', async () => {
    const s = await setup({ texts: ['plain answer'], gzip: true }, { masking: [], record: { request_body: 'raw', response_body: 'raw' } });
    const via = await unary(s.client, 'ModelInfer', inferRequest('llama', 'hi'));
    expect((via as unknown as { response: { outputs: Outputs } }).response.outputs[0]!.contents!.bytes_contents.map(String)).toEqual(['plain answer']);
    await s.seal();
    const { events } = await sessionEvents(s.gw, s.sessionId);
    const [down] = downMessages(events);
    expect(down!.fields).toMatchObject({ compressed: true, json: { outputs: [{ contents: { bytes_contents: [Buffer.from('plain answer').toString('base64')] } }, {}] } });
  });
});
