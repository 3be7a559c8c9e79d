/**
 * `sluice replay --resend` of a recorded gRPC call: a unary call goes again as a gRPC call through a tunnel,
 * as the current user, and the recorded answer is compared with the new one; a streaming call is refused.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, onTestFinished } from 'vitest';
import { parseListen } from '../../server/listen-address.js';
import { CONNECTION_METADATA } from '../../server/protocols/grpc-direct.js';
import { startGrpcListener } from '../../server/protocols/grpc-listener.js';
import { runCliInProcess } from '../helpers/cli-in-process.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { inferRequest, kserveClient, startKserveModel, type KserveModel } from '../helpers/kserve-model.js';
import { tempDir } from '../helpers/temp-dir.js';

const gateways = gatewayFixture();

async function setup(): Promise<{ gw: TestGateway; model: KserveModel; client: grpc.Client; metadata: grpc.Metadata; env: NodeJS.ProcessEnv }> {
  const model = await startKserveModel({ tokens: ['once ', 'upon'] });
  onTestFinished(() => model.close());
  const gw = await gateways.start({
    connections: () => [{ name: 'triton', type: 'grpc', upstream: `grpc://${model.address}`, allow_groups: ['ml-eng'], record: { request_body: 'raw', response_body: 'raw' } }],
    config: { grpc_listen: '127.0.0.1:0', audit: { users_read_own: true } },
  });
  const listener = await startGrpcListener(parseListen('127.0.0.1:0'), gw.app.grpcCalls!);
  onTestFinished(() => listener.close());
  const client = kserveClient(listener.url.slice('http://'.length));
  onTestFinished(() => client.close());
  const token = await gw.token('alice');
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  metadata.set(CONNECTION_METADATA, 'triton');
  metadata.set('x-team', 'search');
  const dir = await tempDir('sluice-grpc-resend-');
  return { gw, model, client, metadata, env: { ...process.env, SLUICE_TOKEN: token, SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: join(dir, 'no-config') } };
}

async function recordedSession(gw: TestGateway): Promise<string> {
  const [s] = (await gw.sessions()).filter((x) => x.connection === 'triton');
  expect(s).toBeDefined();
  return s!.id;
}

describe('re-sending a recorded gRPC call', () => {
  it('a unary call goes again through the gateway as a gRPC call, with its metadata, and the answers are compared', async () => {
    const s = await setup();
    await new Promise<void>((resolve, reject) =>
      (s.client as unknown as { ModelInfer: Function }).ModelInfer(inferRequest('llama', 'hello there'), s.metadata, (err: Error | null) => (err === null ? resolve() : reject(err))),
    );
    const session = await recordedSession(s.gw);

    const run = await runCliInProcess(['replay', session, '--exchange', '1', '--resend', '--json'], s.env);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as { old: { session: string; text: string }; new: { session: string; text: string }; diff: { op: string }[] };
    expect(out.old).toMatchObject({ session, text: 'HELLO THERE' });
    expect(out.new.text).toBe('HELLO THERE');
    expect(out.new.session).not.toBe(session);
    expect(out.diff.every((p) => p.op === 'equal')).toBe(true);
    // The model was asked the same question twice, the second time with the recorded metadata, not the caller's token.
    expect(s.model.calls.map((c) => c.method)).toEqual(['ModelInfer', 'ModelInfer']);
    expect(s.model.calls[1]!.requests).toEqual(s.model.calls[0]!.requests);
    expect(s.model.calls[1]!.requests).toHaveLength(1);
    expect(s.model.calls[1]!.metadata).toMatchObject({ 'x-team': 'search' });
    const resent = (await s.gw.sessions()).find((x) => x.id === out.new.session);
    expect(resent).toMatchObject({ user: 'alice', connection: 'triton', reason: `re-send of ${session}#1` });
  });

  it('a streaming call is refused with a message saying why, and nothing is sent', async () => {
    const s = await setup();
    await new Promise<void>((resolve) => {
      const call = (s.client as unknown as { ModelStreamInfer(m: grpc.Metadata): grpc.ClientDuplexStream<unknown, unknown> }).ModelStreamInfer(s.metadata);
      call.on('data', () => undefined);
      call.on('error', () => undefined);
      call.on('status', () => resolve());
      call.write(inferRequest('llama', 'story'));
      call.end();
    });
    const session = await recordedSession(s.gw);
    const run = await runCliInProcess(['replay', session, '--exchange', '1', '--resend'], s.env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('is a streaming gRPC call (inference.GRPCInferenceService/ModelStreamInfer: 1 messages up, 2 down): only unary calls can be re-sent');
    expect(s.model.calls).toHaveLength(1);
  });
});
