import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname, isAbsolute, resolve } from 'node:path';
import protobuf from 'protobufjs';
import { SluiceError } from '../../../shared/errors.js';
import { splitCallPath } from './grpc-metadata.js';
import { KSERVE_V2_PROTO } from './kserve-v2-proto.js';

/** Descriptors built into the gateway, by the name a connection's `descriptors:` gives them. */
export const BUILT_IN_DESCRIPTORS: Readonly<Record<string, string>> = Object.freeze({ 'kserve-v2': KSERVE_V2_PROTO });

/** One method of a service as the descriptors define it. */
export interface GrpcMethod {
  /** Fully qualified service name: `inference.GRPCInferenceService`. */
  readonly service: string;
  readonly name: string;
  readonly requestType: protobuf.Type;
  readonly responseType: protobuf.Type;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** The methods a connection's descriptors define, looked up by the call's path. */
export interface GrpcDescriptors {
  /** The method `/package.Service/Method` names; undefined for one the descriptors do not define. */
  method(path: string): GrpcMethod | undefined;
}

// protobufjs/ext/descriptor adds `Root.fromDescriptor` (descriptor sets, as protoc writes them) when loaded.
const requireCjs = createRequire(import.meta.url);
let descriptorExtension = false;
function rootFromDescriptorSet(bytes: Buffer): protobuf.Root {
  if (!descriptorExtension) {
    requireCjs('protobufjs/ext/descriptor');
    descriptorExtension = true;
  }
  return (protobuf.Root as unknown as { fromDescriptor(b: Buffer): protobuf.Root }).fromDescriptor(bytes);
}

/**
 * Loads one entry of `descriptors:`: a built-in name, a `.proto` file (its imports resolved beside it), or a
 * descriptor set (`protoc --include_imports --descriptor_set_out`). Each entry is its own root, so two
 * entries that share a package never collide. Field names stay as the .proto spells them (`model_name`),
 * which is what policy and the recording show.
 */
function rootOf(entry: string, baseDir: string): protobuf.Root {
  const builtIn = BUILT_IN_DESCRIPTORS[entry];
  if (builtIn !== undefined) return protobuf.parse(builtIn, new protobuf.Root(), { keepCase: true }).root;
  const file = isAbsolute(entry) ? entry : resolve(baseDir, entry);
  if (extname(file) === '.proto') return new protobuf.Root().loadSync(file, { keepCase: true });
  return rootFromDescriptorSet(readFileSync(file));
}

/** Loads a connection's descriptors; a file that cannot be read or parsed is a configuration error naming it. */
export function loadGrpcDescriptors(entries: readonly string[], baseDir: string): GrpcDescriptors {
  const roots: protobuf.Root[] = [];
  for (const entry of entries) {
    try {
      const root = rootOf(entry, baseDir);
      root.resolveAll();
      roots.push(root);
    } catch (err) {
      throw new SluiceError('ERR_CONFIG_INVALID', { message: `The gRPC descriptors "${entry}" cannot be loaded: ${(err as Error).message}`, cause: err });
    }
  }
  const methods = new Map<string, GrpcMethod>();
  return {
    method(path) {
      const cached = methods.get(path);
      if (cached !== undefined) return cached;
      let found: GrpcMethod | undefined;
      for (const root of roots) if ((found = findMethod(root, path)) !== undefined) break;
      // Only paths of defined methods are kept: a caller cannot grow the cache with made-up names.
      if (found !== undefined) methods.set(path, found);
      return found;
    },
  };
}

function findMethod(root: protobuf.Root, path: string): GrpcMethod | undefined {
  const parts = splitCallPath(path);
  if (parts === undefined) return undefined;
  let service: protobuf.ReflectionObject | null;
  try {
    service = root.lookup(parts.service);
  } catch {
    return undefined;
  }
  if (!(service instanceof protobuf.Service)) return undefined;
  const method = service.methods[parts.method];
  if (method === undefined || method.resolvedRequestType === null || method.resolvedResponseType === null) return undefined;
  return {
    service: parts.service,
    name: parts.method,
    requestType: method.resolvedRequestType,
    responseType: method.resolvedResponseType,
    requestStream: method.requestStream === true,
    responseStream: method.responseStream === true,
  };
}

/** Each connection's descriptors, loaded once per configuration (a reload brings new connection objects). */
export interface GrpcDescriptorCache {
  forConnection(connection: { readonly descriptors: readonly string[] }): GrpcDescriptors;
}

/** Creates the cache; relative descriptor paths are resolved against `baseDir` (the configuration file's directory). */
export function createGrpcDescriptorCache(baseDir: string = process.cwd()): GrpcDescriptorCache {
  const loaded = new WeakMap<object, GrpcDescriptors>();
  return {
    forConnection(connection) {
      let descriptors = loaded.get(connection);
      if (descriptors === undefined) {
        descriptors = loadGrpcDescriptors(connection.descriptors, baseDir);
        loaded.set(connection, descriptors);
      }
      return descriptors;
    },
  };
}
