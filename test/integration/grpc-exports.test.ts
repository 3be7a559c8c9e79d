/**
 * Exports of gRPC sessions, read through the sessions API as an auditor: the exchange list and the JSONL
 * export name each call's service, method and status, the JSONL keeps each message decoded with its timing
 * and size, and HAR (which has no form for gRPC messages) lists no entry but says how many calls it left out.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, onTestFinished } from 'vitest';
import { parseListen } from '../../server/listen-address.js';
import { CONNECTION_METADATA } from '../../server/protocols/grpc-direct.js';
import { startGrpcListener } from '../../server/protocols/grpc-listener.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { inferRequest, kserveClient, startKserveModel } from '../helpers/kserve-model.js';

const gateways = gatewayFixture();

const TOKENS = ['one ', 'two ', 'three'];

async function setup(): Promise<{ gw: TestGateway; client: grpc.Client; metadata(): Promise<grpc.Metadata>; seal(): Promise<void> }> {
  const model = await startKserveModel({ tokens: TOKENS });
  onTestFinished(() => model.close());
  const gw = await gateways.start({
    connections: () => [{ name: 'triton', type: 'grpc', upstream: `grpc://${model.address}`, allow_groups: ['ml-eng'], record: { request_body: 'raw', response_body: 'raw' } }],
    config: { grpc_listen: '127.0.0.1:0' },
  });
  const listener = await startGrpcListener(parseListen('127.0.0.1:0'), gw.app.grpcCalls!);
  onTestFinished(() => listener.close());
  const client = kserveClient(listener.url.slice('http://'.length));
  onTestFinished(() => client.close());
  return {
    gw,
    client,
    async metadata() {
      const m = new grpc.Metadata();
      m.set('authorization', `Bearer ${await gw.token('alice')}`);
      m.set(CONNECTION_METADATA, 'triton');
      return m;
    },
    async seal() {
      client.close();
      await listener.close();
      await gw.stopApp();
      await gw.startApp();
    },
  };
}

function modelInfer(client: grpc.Client, text: string, metadata: grpc.Metadata): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => {
    (client as unknown as { ModelInfer: Function }).ModelInfer(inferRequest('llama', text), metadata, (err: grpc.ServiceError | null) => resolve(err));
  });
}

function streamInfer(client: grpc.Client, metadata: grpc.Metadata): Promise<number> {
  return new Promise((resolve) => {
    const call = (client as unknown as { ModelStreamInfer(m: grpc.Metadata): grpc.ClientDuplexStream<unknown, unknown> }).ModelStreamInfer(metadata);
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => resolve(s.code));
    call.write(inferRequest('llama', 'story'));
    call.end();
  });
}

async function get(gw: TestGateway, path: string): Promise<Response> {
  return fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${await gw.token('carol')}` } });
}

async function sessionOf(gw: TestGateway): Promise<string[]> {
  return (await gw.sessions()).filter((s) => s.connection === 'triton').sort((a, b) => a.startedAt - b.startedAt).map((s) => s.id);
}

describe('exports of gRPC sessions', () => {
  it('the exchange list and the JSONL export name service, method and status; JSONL keeps every message decoded with its time and size', async () => {
    const s = await setup();
    expect(await modelInfer(s.client, 'hello there', await s.metadata())).toBeNull();
    expect(await streamInfer(s.client, await s.metadata())).toBe(grpc.status.OK);
    await s.seal();
    // Both calls are exchanges of one session: the caller's, on this connection.
    const [id] = await sessionOf(s.gw);

    const detail = (await (await get(s.gw, `/v1/sessions/${id}`)).json()) as { exchanges: { id: string; grpc: unknown }[] };
    expect(detail.exchanges).toHaveLength(2);
    expect(detail.exchanges[0]!.grpc).toEqual({
      service: 'inference.GRPCInferenceService',
      method: 'ModelInfer',
      status: 0,
      status_name: 'OK',
      // What the trailers said: grpc-js servers send the status's name.
      message: 'OK',
      messages_up: 1,
      messages_down: 1,
    });
    expect(detail.exchanges[1]!.grpc).toMatchObject({ method: 'ModelStreamInfer', status_name: 'OK', messages_up: 1, messages_down: 3 });

    const res = await get(s.gw, `/v1/sessions/${id}/export?format=jsonl`);
    expect(res.status).toBe(200);
    const all = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    // Lines of the session itself belong to no call.
    expect(all.find((l) => l.type === 'session.start')!.grpc).toBeUndefined();
    expect(all.find((l) => l.type === 'exchange.end')!.grpc).toMatchObject({ method: 'ModelInfer', status: 0 });
    const lines = all.filter((l) => l.exchange === detail.exchanges[1]!.id);
    const messages = lines.filter((l) => l.type === 'grpc.message');
    expect(messages.map((m) => m.dir)).toEqual(['up', 'down', 'down', 'down']);
    for (const m of messages) {
      expect(m.grpc).toEqual({ service: 'inference.GRPCInferenceService', method: 'ModelStreamInfer' });
      expect(typeof m.t).toBe('number');
      expect(m.bytes).toBeGreaterThan(0);
      expect(m.payload).toBeUndefined();
    }
    expect(messages[0]!.json).toMatchObject({ model_name: 'llama' });
    const told = messages.slice(1).map((m) => Buffer.from(m.json.infer_response.outputs[0].contents.bytes_contents[0], 'base64').toString('utf8'));
    expect(told).toEqual(TOKENS);
    const end = lines.find((l) => l.type === 'exchange.end')!;
    expect(end.grpc).toEqual({ service: 'inference.GRPCInferenceService', method: 'ModelStreamInfer', status: 0, status_name: 'OK', message: 'OK' });
  });

  it('HAR of a gRPC session is a valid log with no entries that says how many calls it leaves out, and why', async () => {
    const s = await setup();
    expect(await modelInfer(s.client, 'hello', await s.metadata())).toBeNull();
    await s.seal();
    const [id] = await sessionOf(s.gw);
    const res = await get(s.gw, `/v1/sessions/${id}/export?format=har`);
    expect(res.status).toBe(200);
    const har = (await res.json()) as { log: { entries: unknown[]; comment: string; _grpc_calls_left_out: number } };
    expect(har.log.entries).toEqual([]);
    expect(har.log._grpc_calls_left_out).toBe(1);
    expect(har.log.comment).toContain('export it as jsonl');
  });
});
