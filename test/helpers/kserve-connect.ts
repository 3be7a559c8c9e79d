/**
 * The KServe v2 service as @connectrpc/connect-node needs it: a service description built at run time from
 * the gateway's own kserve-v2 descriptors (no generated code).
 */
import { createRequire } from 'node:module';
import { createFileRegistry, fromBinary, type DescService } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import protobuf from 'protobufjs';
import { KSERVE_V2_PROTO } from '../../server/protocols/grpc/kserve-v2-proto.js';

/** The KServe v2 service as connect-es describes it, from a descriptor set of the built-in .proto. */
export function kserveService(): DescService {
  createRequire(import.meta.url)('protobufjs/ext/descriptor');
  const root = protobuf.parse(KSERVE_V2_PROTO, new protobuf.Root(), { keepCase: true }).root;
  // Resolved, the descriptor names each method's types fully (.inference.X), as connect-es needs.
  root.resolveAll();
  const set = (root as unknown as { toDescriptor(syntax: string): protobuf.Message }).toDescriptor('proto3');
  // protobufjs writes a field's type as the .proto spells it (InferParameter); a descriptor set names it
  // fully (.inference.InferParameter). The kserve-v2 types have distinct simple names, so each maps to one.
  const fullNames = new Map<string, string>();
  const collect = (ns: protobuf.NamespaceBase): void => {
    for (const nested of ns.nestedArray) {
      if (nested instanceof protobuf.Type || nested instanceof protobuf.Enum) fullNames.set(nested.name, nested.fullName);
      if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) collect(nested);
    }
  };
  collect(root);
  // A map's entry type (ParametersEntry) is nested in its message, which is where it is looked up first.
  type MessageDescriptor = { name: string; field?: { typeName?: string }[]; nestedType?: MessageDescriptor[] };
  const qualify = (message: MessageDescriptor, scope: string): void => {
    const own = `${scope}.${message.name}`;
    const nested = new Set((message.nestedType ?? []).map((n) => n.name));
    for (const f of message.field ?? []) {
      if (f.typeName === undefined || f.typeName === '' || f.typeName.startsWith('.')) continue;
      f.typeName = nested.has(f.typeName) ? `${own}.${f.typeName}` : (fullNames.get(f.typeName) ?? f.typeName);
    }
    for (const n of message.nestedType ?? []) qualify(n, own);
  };
  for (const file of (set as unknown as { file: { package: string; messageType: MessageDescriptor[] }[] }).file) {
    for (const m of file.messageType) qualify(m, `.${file.package}`);
  }
  const bytes = (set.constructor as unknown as { encode(m: unknown): protobuf.Writer }).encode(set).finish();
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
  return registry.getService('inference.GRPCInferenceService')!;
}
