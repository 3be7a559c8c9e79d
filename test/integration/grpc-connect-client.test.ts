/**
 * A second gRPC client implementation through the tunnel: @connectrpc/connect-node in gRPC mode, its
 * service description built at run time from the gateway's own kserve-v2 descriptors (no generated code).
 * Answers equal the model's own, and masking applies to what it receives as to grpc-js.
 */
import { createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import type { DescService } from '@bufbuild/protobuf';
import { describe, expect, it, onTestFinished } from 'vitest';
import { gatewayFixture } from '../helpers/gateway.js';
import { openTunnelPort, tritonConnection } from '../helpers/grpc-tunnel.js';
import { kserveService } from '../helpers/kserve-connect.js';
import { startKserveModel } from '../helpers/kserve-model.js';

const gateways = gatewayFixture();

async function connectClient(masking: string[]): Promise<Client<DescService>> {
  const model = await startKserveModel({ tokens: ['mail ', 'jane.doe@exa', 'mple.com', ' soon'] });
  onTestFinished(() => model.close());
  const gw = await gateways.start({
    connections: () => [tritonConnection(model, { masking })],
    config: { masking_profiles: { pii: { detectors: ['email'] } } },
  });
  const port = await openTunnelPort(gw);
  return createClient(kserveService(), createGrpcTransport({ baseUrl: `http://${port.address}` }));
}

describe('a connect-node gRPC client through the tunnel', () => {
  it('calls ModelInfer and gets the model answer, with BYTES masked', async () => {
    const client = (await connectClient(['pii'])) as unknown as Record<string, (req: unknown) => Promise<Record<string, unknown>>>;
    // connect-es names fields in lowerCamelCase (modelName for model_name).
    const answer = (await client.modelInfer!({ modelName: 'llama', id: 'r1', inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1n], contents: { bytesContents: [Buffer.from('ask bob@example.org')] } }] })) as {
      modelName: string;
      outputs: { name: string; contents: { bytesContents: Uint8Array[]; fp32Contents: number[] } }[];
    };
    expect(answer.modelName).toBe('llama');
    expect(Buffer.from(answer.outputs[0]!.contents.bytesContents[0]!).toString()).toBe('ASK [EMAIL]');
    expect(answer.outputs[1]!.contents.fp32Contents).toEqual([0.5, 0.25, 0.125]);
  });

  it('streams ModelStreamInfer token by token, the split email masked', async () => {
    const client = (await connectClient(['pii'])) as unknown as Record<string, (req: AsyncIterable<unknown>) => AsyncIterable<Record<string, unknown>>>;
    async function* one(): AsyncIterable<unknown> {
      yield { modelName: 'llama', inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1n], contents: { bytesContents: [Buffer.from('x')] } }] };
    }
    let text = '';
    for await (const m of client.modelStreamInfer!(one())) {
      const outputs = (m as { inferResponse: { outputs: { contents: { bytesContents: Uint8Array[] } }[] } }).inferResponse.outputs;
      const token = Buffer.from(outputs[0]!.contents.bytesContents[0]!).toString();
      expect(token).not.toMatch(/jane|exa|mple/);
      text += token;
    }
    expect(text).toBe('mail [EMAIL] soon');
  });
});
