import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { loadGrpcDescriptors } from '../../server/protocols/grpc/grpc-descriptors.js';
import { messageJson } from '../../server/protocols/grpc/grpc-message-json.js';
import { KSERVE_V2_PROTO } from '../../server/protocols/grpc/kserve-v2-proto.js';
import { tempDir } from '../helpers/temp-dir.js';

const PROTO_FILE = new URL('../../server/protocols/grpc/kserve-v2.proto', import.meta.url);

/** Field numbers of the published protocol (grpc_predict_v2.proto, Triton's grpc_service.proto): the interface. */
const FIELD_NUMBERS: Record<string, Record<string, number>> = {
  ModelInferRequest: { model_name: 1, model_version: 2, id: 3, parameters: 4, inputs: 5, outputs: 6, raw_input_contents: 7 },
  'ModelInferRequest.InferInputTensor': { name: 1, datatype: 2, shape: 3, parameters: 4, contents: 5 },
  'ModelInferRequest.InferRequestedOutputTensor': { name: 1, parameters: 2 },
  ModelInferResponse: { model_name: 1, model_version: 2, id: 3, parameters: 4, outputs: 5, raw_output_contents: 6 },
  'ModelInferResponse.InferOutputTensor': { name: 1, datatype: 2, shape: 3, parameters: 4, contents: 5 },
  ModelStreamInferResponse: { error_message: 1, infer_response: 2 },
  InferParameter: { bool_param: 1, int64_param: 2, string_param: 3, double_param: 4, uint64_param: 5 },
  InferTensorContents: { bool_contents: 1, int_contents: 2, int64_contents: 3, uint_contents: 4, uint64_contents: 5, fp32_contents: 6, fp64_contents: 7, bytes_contents: 8 },
  ModelMetadataResponse: { name: 1, versions: 2, platform: 3, inputs: 4, outputs: 5 },
  'ModelMetadataResponse.TensorMetadata': { name: 1, datatype: 2, shape: 3 },
  ModelReadyRequest: { name: 1, version: 2 },
  ServerMetadataResponse: { name: 1, version: 2, extensions: 3 },
};

describe('kserve-v2 descriptors', () => {
  it('are built in exactly as kserve-v2.proto spells them', () => {
    expect(KSERVE_V2_PROTO).toBe(readFileSync(PROTO_FILE, 'utf8'));
  });

  it('number every field as the published protocol does', () => {
    const root = protobuf.parse(KSERVE_V2_PROTO, { keepCase: true }).root;
    for (const [message, fields] of Object.entries(FIELD_NUMBERS)) {
      const type = root.lookupType(`inference.${message}`);
      expect(Object.fromEntries(Object.entries(type.fields).map(([name, f]) => [name, f.id])), message).toEqual(fields);
    }
  });

  it('define the seven methods, ModelStreamInfer streaming both ways', () => {
    const descriptors = loadGrpcDescriptors(['kserve-v2'], process.cwd());
    for (const name of ['ServerLive', 'ServerReady', 'ModelReady', 'ServerMetadata', 'ModelMetadata', 'ModelInfer']) {
      expect(descriptors.method(`/inference.GRPCInferenceService/${name}`), name).toMatchObject({ requestStream: false, responseStream: false });
    }
    expect(descriptors.method('/inference.GRPCInferenceService/ModelStreamInfer')).toMatchObject({ requestStream: true, responseStream: true });
    expect(descriptors.method('/inference.GRPCInferenceService/RepositoryIndex')).toBeUndefined();
    expect(descriptors.method('/inference.Nope/ModelInfer')).toBeUndefined();
    expect(descriptors.method('not a path')).toBeUndefined();
  });

  it('decode a message as JSON with the .proto field names and proto3 defaults', () => {
    const method = loadGrpcDescriptors(['kserve-v2'], process.cwd()).method('/inference.GRPCInferenceService/ModelInfer')!;
    const bytes = method.requestType.encode(method.requestType.fromObject({ model_name: 'llama', inputs: [{ name: 'x', datatype: 'INT64', shape: [2], contents: { int64_contents: [1, 2] } }] })).finish();
    expect(messageJson(method.requestType, bytes)).toMatchObject({ model_name: 'llama', model_version: '', inputs: [{ shape: ['2'], contents: { int64_contents: ['1', '2'] } }] });
  });
});

describe('descriptors from files', () => {
  async function dir(): Promise<string> {
    const d = await tempDir('sluice-grpc-');
    return d;
  }
  const SHOP = 'syntax = "proto3";\npackage shop;\nservice Orders { rpc Place(Order) returns (Order); rpc Watch(Order) returns (stream Order); }\nmessage Order { string item_name = 1; }\n';

  it('load a .proto file relative to the base directory', async () => {
    const d = await dir();
    await writeFile(join(d, 'shop.proto'), SHOP);
    const descriptors = loadGrpcDescriptors(['kserve-v2', 'shop.proto'], d);
    expect(descriptors.method('/shop.Orders/Watch')).toMatchObject({ responseStream: true });
    expect(descriptors.method('/inference.GRPCInferenceService/ModelInfer')).toBeDefined();
  });

  it('load a descriptor set as protoc writes it', async () => {
    const d = await dir();
    // protobufjs's descriptor extension writes the same FileDescriptorSet that `protoc --descriptor_set_out` does.
    const descriptor = createRequire(import.meta.url)('protobufjs/ext/descriptor') as { FileDescriptorSet: protobuf.Type };
    const root = protobuf.parse(SHOP, { keepCase: true }).root as protobuf.Root & { toDescriptor(syntax: string): protobuf.Message };
    await writeFile(join(d, 'shop.pb'), descriptor.FileDescriptorSet.encode(root.toDescriptor('proto3')).finish());
    const method = loadGrpcDescriptors([join(d, 'shop.pb')], '/elsewhere').method('/shop.Orders/Place');
    expect(method).toBeDefined();
    expect(messageJson(method!.requestType, method!.requestType.encode({ item_name: 'tea' }).finish())).toEqual({ item_name: 'tea' });
  });

  it('refuse a file that cannot be read, naming it', () => {
    expect(() => loadGrpcDescriptors(['missing.proto'], '/nonexistent')).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID', message: expect.stringContaining('"missing.proto"') }));
  });
});
