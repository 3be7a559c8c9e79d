/**
 * A grpc connection through the real `sluice connect`: the CLI opens a raw local port, and a grpc-js client
 * with insecure local credentials calls a KServe v2 model server through it as it would call the model.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { spawnConnect } from '../helpers/cli-connect.js';
import { runCli } from '../helpers/cli-process.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { inferRequest, kserveClient, startKserveModel, STREAM_TOKENS, streamInfer, unary, type KserveModel } from '../helpers/kserve-model.js';

const gateways = gatewayFixture();
let gw: TestGateway;
let model: KserveModel;

beforeAll(async () => {
  model = await startKserveModel();
  gw = await gateways.start({
    connections: () => [{ name: 'triton', type: 'grpc', upstream: `grpc://${model.address}`, allow_groups: ['ml-eng'] }],
    config: {
      policies: [{ name: 'no-gpt', when: 'request.grpc.method == "ModelInfer" && request.json.model_name.startsWith("gpt-")', action: 'deny', message: 'No frontier models here' }],
    },
  });
});

afterAll(async () => {
  await model?.close();
});

/** `sluice connect triton` as alice; resolves with the local address once the CLI reports it ready. */
async function connect(): Promise<string> {
  const { ready } = await spawnConnect(['triton'], {
    env: { SLUICE_TOKEN: await gw.token('alice'), SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: join(tmpdir(), 'sluice-e2e-none') },
  });
  return ready.local_url!;
}

describe('grpc through `sluice connect`', () => {
  it('serves a grpc-js client: unary and streaming answers equal to the model\'s, policy refusals as gRPC statuses', async () => {
    const address = await connect();
    const client = kserveClient(address);
    const direct = kserveClient(model.address);
    onTestFinished(() => {
      client.close();
      direct.close();
    });

    const request = inferRequest('llama', 'through the cli');
    expect(await unary(client, 'ModelInfer', request)).toEqual(await unary(direct, 'ModelInfer', request));
    const streamed = await streamInfer(client, request);
    expect(streamed.code).toBe(grpc.status.OK);
    expect(streamed.messages).toHaveLength(STREAM_TOKENS.length);
    expect(streamed.messages).toEqual((await streamInfer(direct, request)).messages);
    expect(await unary(client, 'ModelInfer', inferRequest('gpt-5', 'x'))).toEqual({ ok: false, code: grpc.status.PERMISSION_DENIED, details: 'No frontier models here' });
  });

  it('`sluice run` gives the command SLUICE_GRPC_TARGET, which a gRPC client dials', async () => {
    // The child is a gRPC client of its own: ServerLive through the target, its answer's bytes in hex.
    const script = [
      "const grpc = require('@grpc/grpc-js');",
      'const target = process.env.SLUICE_GRPC_TARGET;',
      'const c = new grpc.Client(target, grpc.credentials.createInsecure());',
      "c.makeUnaryRequest('/inference.GRPCInferenceService/ServerLive', (b) => b, (b) => b, Buffer.alloc(0), (err, res) => {",
      "  console.log(JSON.stringify({ target, code: err ? err.code : 0, answer: res ? res.toString('hex') : null }));",
      '  c.close();',
      '});',
    ].join('\n');
    const r = await runCli(['run', 'triton', '--', process.execPath, '-e', script], {
      env: { SLUICE_TOKEN: await gw.token('alice'), SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: join(tmpdir(), 'sluice-e2e-none') },
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      timeoutMs: 20_000,
    });
    expect(r.code, r.stderr).toBe(0);
    // ServerLiveResponse { live: true } is field 1, varint 1.
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toEqual({ target: expect.stringMatching(/^127\.0\.0\.1:\d+$/), code: 0, answer: '0801' });
  });
});
