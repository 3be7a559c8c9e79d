import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { SluiceError } from '../../shared/errors.js';

/**
 * The messages of gRPC server reflection (grpc/reflection/v1/reflection.proto), as much as a client that
 * asks for services and files needs. v1alpha has the same messages under another package.
 */
const REFLECTION_PROTO = `
syntax = "proto3";
package reflection;
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    string list_services = 7;
  }
}
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
`;

/** The reflection services a server may offer, newest first: v1alpha is what older servers (and grpcurl's peers) speak. */
export const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'] as const;

/** Options of `descriptorSetFromReflection`. */
export interface ReflectionOptions {
  /** `grpc://host:port` (h2c) or `grpcs://host:port` (TLS). */
  readonly url: string;
  /** PEM CA for a `grpcs://` server whose certificate no public CA signs. */
  readonly caFile?: string;
  /** Milliseconds the whole exchange may take. */
  readonly timeoutMs: number;
}

const root = protobuf.parse(REFLECTION_PROTO, { keepCase: true }).root;
const RequestType = root.lookupType('reflection.ServerReflectionRequest');
const ResponseType = root.lookupType('reflection.ServerReflectionResponse');

interface ReflectionResponse {
  file_descriptor_response?: { file_descriptor_proto?: Uint8Array[] };
  list_services_response?: { service?: { name: string }[] };
  error_response?: { error_code?: number; error_message?: string };
}

// protobufjs/ext/descriptor gives FileDescriptorProto (to read a file's name and imports) and Root.fromDescriptor.
const requireCjs = createRequire(import.meta.url);
const descriptor = requireCjs('protobufjs/ext/descriptor') as { FileDescriptorProto: protobuf.Type; FileDescriptorSet: protobuf.Type };

function target(url: string): { address: string; tls: boolean } {
  const m = /^(grpcs?):\/\/([^/?#]+)\/?$/.exec(url);
  if (m === null) throw new SluiceError('ERR_USAGE', { message: `--from-reflection must be grpc://host:port (h2c) or grpcs://host:port (TLS), not ${JSON.stringify(url)}` });
  return { address: m[2]!, tls: m[1] === 'grpcs' };
}

function unreachable(url: string, why: string, cause?: unknown): SluiceError {
  return new SluiceError('ERR_UPSTREAM_UNAVAILABLE', { message: `Server reflection at ${url} failed: ${why}`, ...(cause === undefined ? {} : { cause }) });
}

/** One reflection stream: requests answered in order, one response each. */
class ReflectionStream {
  readonly #call: grpc.ClientDuplexStream<Buffer, Buffer>;
  readonly #waiting: { resolve(r: ReflectionResponse): void; reject(e: Error): void }[] = [];
  #ended: Error | undefined;

  constructor(client: grpc.Client, service: string, deadline: number) {
    this.#call = client.makeBidiStreamRequest(
      `/${service}/ServerReflectionInfo`,
      (b: Buffer) => b,
      (b: Buffer) => b,
      new grpc.Metadata(),
      { deadline },
    );
    this.#call.on('data', (bytes: Buffer) => {
      const r = ResponseType.toObject(ResponseType.decode(bytes), { oneofs: true }) as ReflectionResponse;
      this.#waiting.shift()?.resolve(r);
    });
    const fail = (err: Error): void => {
      this.#ended = err;
      for (const w of this.#waiting.splice(0)) w.reject(err);
    };
    this.#call.on('error', fail);
    this.#call.on('end', () => fail(new Error('the server ended the reflection stream')));
  }

  ask(request: Record<string, string>): Promise<ReflectionResponse> {
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#call.write(Buffer.from(RequestType.encode(RequestType.fromObject(request)).finish()));
    });
  }

  close(): void {
    this.#call.end();
    this.#call.cancel();
  }
}

/**
 * Asks a server's reflection service (v1, else v1alpha) for every service it offers and the files that
 * define them, imports included, and returns them as a descriptor set (`FileDescriptorSet`, what
 * `protoc --include_imports --descriptor_set_out` writes). Only a bootstrap: the set is checked to load,
 * and the gateway uses it as a pinned file, never asking the server again.
 */
export async function descriptorSetFromReflection(options: ReflectionOptions): Promise<{ set: Buffer; services: string[]; files: string[]; version: string }> {
  const { address, tls } = target(options.url);
  const credentials = tls ? grpc.credentials.createSsl(options.caFile === undefined ? null : readFileSync(options.caFile)) : grpc.credentials.createInsecure();
  const client = new grpc.Client(address, credentials);
  const deadline = Date.now() + options.timeoutMs;
  try {
    for (const service of REFLECTION_SERVICES) {
      const stream = new ReflectionStream(client, service, deadline);
      try {
        let listed: ReflectionResponse;
        try {
          listed = await stream.ask({ list_services: '' });
        } catch (err) {
          // A server without this version answers UNIMPLEMENTED: try the older one.
          if ((err as { code?: number }).code === grpc.status.UNIMPLEMENTED) continue;
          throw unreachable(options.url, (err as { details?: string }).details ?? (err as Error).message, err);
        }
        const services = (listed.list_services_response?.service ?? []).map((s) => s.name).filter((n) => !n.startsWith('grpc.reflection.'));
        if (services.length === 0) throw unreachable(options.url, 'the server lists no service but reflection itself');
        const files = await collectFiles(stream, services, options.url);
        const set = encodeSet(files);
        checkLoads(set, services, options.url);
        return { set, services, files: files.map((f) => f.name), version: service.split('.')[2]! };
      } finally {
        stream.close();
      }
    }
    throw unreachable(options.url, 'the server offers no reflection service (grpc.reflection.v1 or v1alpha)');
  } finally {
    client.close();
  }
}

interface FileEntry {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly dependencies: readonly string[];
}

async function collectFiles(stream: ReflectionStream, services: readonly string[], url: string): Promise<FileEntry[]> {
  const byName = new Map<string, FileEntry>();
  const take = (r: ReflectionResponse, asked: string): void => {
    if (r.error_response !== undefined) throw unreachable(url, `asking for ${asked}: ${r.error_response.error_message ?? `error ${r.error_response.error_code}`}`);
    for (const bytes of r.file_descriptor_response?.file_descriptor_proto ?? []) {
      const file = descriptor.FileDescriptorProto.decode(bytes) as unknown as { name?: string; dependency?: string[] };
      const name = file.name ?? '';
      if (!byName.has(name)) byName.set(name, { name, bytes, dependencies: file.dependency ?? [] });
    }
  };
  for (const service of services) take(await stream.ask({ file_containing_symbol: service }), service);
  // Servers may answer a symbol with its file alone: ask for each import not yet sent.
  for (let missing = missingImports(byName); missing.length > 0; missing = missingImports(byName)) {
    for (const name of missing) {
      take(await stream.ask({ file_by_filename: name }), name);
      if (!byName.has(name)) throw unreachable(url, `the server did not send ${name}, which another file imports`);
    }
  }
  return orderByImports([...byName.values()]);
}

function missingImports(byName: ReadonlyMap<string, FileEntry>): string[] {
  return [...new Set([...byName.values()].flatMap((f) => f.dependencies))].filter((d) => !byName.has(d));
}

/** Imports before the files that import them, as protoc orders a set. */
function orderByImports(files: readonly FileEntry[]): FileEntry[] {
  const byName = new Map(files.map((f) => [f.name, f]));
  const out: FileEntry[] = [];
  const seen = new Set<string>();
  const visit = (f: FileEntry): void => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    for (const d of f.dependencies) {
      const dep = byName.get(d);
      if (dep !== undefined) visit(dep);
    }
    out.push(f);
  };
  for (const f of [...files].sort((a, b) => a.name.localeCompare(b.name))) visit(f);
  return out;
}

/** A `FileDescriptorSet`: field 1, each file's bytes as sent (re-encoding could drop what this client does not know). */
function encodeSet(files: readonly FileEntry[]): Buffer {
  const writer = protobuf.Writer.create();
  for (const f of files) writer.uint32(10).bytes(f.bytes);
  return Buffer.from(writer.finish());
}

/** What the gateway will do with the file: load it and find every listed service in it. */
function checkLoads(set: Buffer, services: readonly string[], url: string): void {
  try {
    const loaded = (protobuf.Root as unknown as { fromDescriptor(b: Buffer): protobuf.Root }).fromDescriptor(set);
    loaded.resolveAll();
    for (const s of services) loaded.lookupService(s);
  } catch (err) {
    throw unreachable(url, `the descriptors it sent do not load: ${(err as Error).message}`, err);
  }
}
