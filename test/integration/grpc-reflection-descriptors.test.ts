/**
 * `sluice grpc descriptors --from-reflection`: against a grpc-js server whose reflection service (v1, or only
 * v1alpha) is implemented here with the reflection messages, the CLI writes a descriptor set holding every
 * listed service and the files it imports, which the gateway's own loader reads as a pinned `descriptors` file.
 */
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadGrpcDescriptors } from '../../server/protocols/grpc/grpc-descriptors.js';
import { runCliInProcess } from '../helpers/cli-in-process.js';
import { tempDir } from '../helpers/temp-dir.js';

const requireCjs = createRequire(import.meta.url);
const descriptor = requireCjs('protobufjs/ext/descriptor') as { FileDescriptorProto: protobuf.Type };

// grpc/reflection/v1/reflection.proto, the fields this server uses.
const reflection = protobuf.parse(
  `syntax = "proto3";
  message Req { string host = 1; oneof r { string file_by_filename = 3; string file_containing_symbol = 4; string list_services = 7; } }
  message Res { string valid_host = 1; Req original_request = 2;
    oneof r { Files file_descriptor_response = 4; Services list_services_response = 6; Err error_response = 7; } }
  message Files { repeated bytes file_descriptor_proto = 1; }
  message Services { repeated Service service = 1; }
  message Service { string name = 1; }
  message Err { int32 error_code = 1; string error_message = 2; }`,
  { keepCase: true },
).root;
const Req = reflection.lookupType('Req');
const Res = reflection.lookupType('Res');

const fileBytes = (o: Record<string, unknown>): Buffer => Buffer.from(descriptor.FileDescriptorProto.encode(descriptor.FileDescriptorProto.fromObject(o)).finish());

/** demo/echo.proto imports demo/common.proto: a client must ask for the import by name. */
const FILES: Record<string, Buffer> = {
  'demo/common.proto': fileBytes({
    name: 'demo/common.proto',
    package: 'demo',
    syntax: 'proto3',
    messageType: [{ name: 'Text', field: [{ name: 'text', number: 1, label: 1, type: 9, jsonName: 'text' }] }],
  }),
  'demo/echo.proto': fileBytes({
    name: 'demo/echo.proto',
    package: 'demo',
    dependency: ['demo/common.proto'],
    syntax: 'proto3',
    service: [{ name: 'Echo', method: [{ name: 'Say', inputType: '.demo.Text', outputType: '.demo.Text', serverStreaming: true }] }],
  }),
};

/** A server offering `demo.Echo` and reflection under `versions`; it answers a symbol with its own file only. */
async function reflectionServer(versions: readonly string[]): Promise<{ url: string; asked: Record<string, unknown>[] }> {
  const server = new grpc.Server();
  const asked: Record<string, unknown>[] = [];
  const identity = (b: Buffer): Buffer => b;
  for (const v of versions) {
    const service = `grpc.reflection.${v}.ServerReflection`;
    server.addService(
      { ServerReflectionInfo: { path: `/${service}/ServerReflectionInfo`, requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
      {
        ServerReflectionInfo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
          call.on('data', (bytes: Buffer) => {
            const req = Req.toObject(Req.decode(bytes), { oneofs: true }) as Record<string, string>;
            asked.push(req);
            const res =
              req.r === 'list_services'
                ? { list_services_response: { service: [{ name: 'demo.Echo' }, { name: service }] } }
                : req.r === 'file_containing_symbol' && req.file_containing_symbol === 'demo.Echo'
                  ? { file_descriptor_response: { file_descriptor_proto: [FILES['demo/echo.proto']] } }
                  : req.r === 'file_by_filename' && FILES[req.file_by_filename!] !== undefined
                    ? { file_descriptor_response: { file_descriptor_proto: [FILES[req.file_by_filename!]] } }
                    : { error_response: { error_code: grpc.status.NOT_FOUND, error_message: 'not found' } };
            call.write(Buffer.from(Res.encode(Res.fromObject(res)).finish()));
          });
          call.on('end', () => call.end());
        },
      },
    );
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))),
  );
  onTestFinished(() => void server.forceShutdown());
  return { url: `grpc://127.0.0.1:${port}`, asked };
}

describe('sluice grpc descriptors --from-reflection', () => {
  for (const versions of [['v1', 'v1alpha'], ['v1alpha']]) {
    it(`writes a descriptor set the gateway loads, imports included (server with reflection ${versions.join(' and ')})`, async () => {
      const server = await reflectionServer(versions);
      const dir = await tempDir('sluice-reflect-');
      const out = join(dir, 'echo.pb');
      const run = await runCliInProcess(['grpc', 'descriptors', '--from-reflection', server.url, '-o', out]);
      expect(run.stderr).toContain(`(reflection ${versions[0]})`);
      expect(run.code).toBe(0);
      expect(run.stderr).toContain('2 files defining demo.Echo');
      // The import was asked for by name, since the server sent only the service's own file.
      expect(server.asked).toContainEqual(expect.objectContaining({ file_by_filename: 'demo/common.proto' }));

      const loaded = loadGrpcDescriptors([out], dir);
      const say = loaded.method('/demo.Echo/Say');
      expect(say).toMatchObject({ service: 'demo.Echo', name: 'Say', requestStream: false, responseStream: true });
      expect(say!.requestType.decode(say!.requestType.encode({ text: 'hi' }).finish()).toJSON()).toEqual({ text: 'hi' });
      expect((await readFile(out)).length).toBeGreaterThan(0);
    });
  }

  it('a server without reflection is an error naming the URL, and nothing is written', async () => {
    const server = await reflectionServer([]);
    const dir = await tempDir('sluice-reflect-');
    const out = join(dir, 'none.pb');
    const run = await runCliInProcess(['grpc', 'descriptors', '--from-reflection', server.url, '-o', out]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('ERR_UPSTREAM_UNAVAILABLE');
    expect(run.stderr).toContain(`${server.url} failed: the server offers no reflection service`);
    await expect(readFile(out)).rejects.toThrow();
  });

  it('refuses a URL that is not grpc:// or grpcs://', async () => {
    const run = await runCliInProcess(['grpc', 'descriptors', '--from-reflection', 'http://127.0.0.1:1', '-o', '/dev/null']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('grpc://host:port');
  });
});
