import type { ConnectionConfig } from '../config/schema.js';
import { createGrpcUpstream } from '../pipeline/grpc-upstream.js';
import { createHttpUpstream, type HttpUpstreamOptions } from '../pipeline/http-upstream.js';
import type { RecordingFacts } from '../pipeline/recorder.js';
import type { ExchangeHandler } from '../pipeline/run-exchange.js';
import { createTcpUpstream } from '../pipeline/tcp-upstream.js';
import type { Upstream } from '../pipeline/upstream.js';
import { GRPC_CONNECTION_FIELDS, HTTP_CONNECTION_FIELDS, TCP_CONNECTION_FIELDS } from './connection-fields.js';
import { createGrpcProtocol } from './grpc.js';
import type { GrpcDescriptorCache } from './grpc/grpc-descriptors.js';
import { GRPC_RECORDING } from './grpc-carrier.js';
import { HTTP_RECORDING } from './http-carrier.js';
import { createHttpProtocol, type HttpProtocolLimits } from './http.js';
import type { StreamProtocol } from './stream-context.js';
import { TCP_RECORDING } from './tcp-carrier.js';
import { createTcpProtocol } from './tcp.js';

/** What a connection type's protocol on tunnel streams is made from. */
export interface ProtocolDeps {
  /** The one pipeline every carrier runs its exchanges through. */
  readonly exchange: ExchangeHandler;
  readonly httpLimits?: HttpProtocolLimits;
  /** How gRPC calls are decoded; shared with the masking stage, so each connection's descriptors load once. */
  readonly grpcDescriptors?: GrpcDescriptorCache;
}

/**
 * Everything the gateway knows about one connection type. A new type (gRPC) is one more entry: a carrier
 * and an upstream, never a pipeline of its own.
 */
export interface ConnectionType {
  /** Its protocol on tunnel streams, which makes a carrier per exchange and hands it to the pipeline. */
  readonly protocol: (deps: ProtocolDeps) => StreamProtocol;
  /** How its upstream is reached. */
  readonly upstream: (deps: HttpUpstreamOptions) => Upstream;
  /** How the recorder keeps its exchanges. */
  readonly recording: RecordingFacts;
  /** Whether an exchange can be held for reviewers; one that cannot wait (a raw byte stream) is refused by a review rule. */
  readonly reviewable: boolean;
  /** Whether its responses pass the masking stage; opaque bytes have no shape that masking could read. */
  readonly masked: boolean;
  /** Its configuration fields besides the common ones (`server/config/schema.ts` composes them). */
  readonly fields: Readonly<Record<string, unknown>>;
}

/** The connection types, by the `type` of a connection in `sluice.yaml`. */
export const CONNECTION_TYPES = {
  http: {
    protocol: (deps) => createHttpProtocol({ exchange: deps.exchange, ...(deps.httpLimits === undefined ? {} : { limits: deps.httpLimits }) }),
    upstream: (deps) => createHttpUpstream(deps),
    recording: HTTP_RECORDING,
    reviewable: true,
    masked: true,
    fields: HTTP_CONNECTION_FIELDS,
  },
  tcp: {
    protocol: (deps) => createTcpProtocol({ exchange: deps.exchange }),
    upstream: () => createTcpUpstream(),
    recording: TCP_RECORDING,
    reviewable: false,
    masked: false,
    fields: TCP_CONNECTION_FIELDS,
  },
  grpc: {
    protocol: (deps) => createGrpcProtocol({ exchange: deps.exchange, ...(deps.grpcDescriptors === undefined ? {} : { descriptors: deps.grpcDescriptors }) }),
    upstream: () => createGrpcUpstream(),
    recording: GRPC_RECORDING,
    // A held call waits before any message goes upstream: a unary call's one message is read (within the
    // read-ahead) for reviewers, a streaming call's wait in HTTP/2 flow control; a refusal is a gRPC status.
    reviewable: true,
    // Messages are decoded with the call's descriptors, masked (string fields, BYTES tensors) and encoded again.
    masked: true,
    fields: GRPC_CONNECTION_FIELDS,
  },
} as const satisfies Record<ConnectionConfig['type'], ConnectionType>;

/** The name of a connection type. */
export type ConnectionTypeName = keyof typeof CONNECTION_TYPES;

/** Every connection type's name. */
export const CONNECTION_TYPE_NAMES = Object.keys(CONNECTION_TYPES) as ConnectionTypeName[];

/** The connection type named `type`; throws for a name the gateway does not know (configuration rules that out). */
export function connectionTypeOf(type: string): ConnectionType {
  const found = (CONNECTION_TYPES as Record<string, ConnectionType | undefined>)[type];
  if (found === undefined) throw new TypeError(`unknown connection type: ${type}`);
  return found;
}

/** Each connection type's protocol on tunnel streams, made once per gateway. */
export interface ConnectionProtocols {
  /** The protocol tunnel streams of `type` are handed to. */
  protocolFor(type: string): StreamProtocol;
  /** Destroys every stream the protocols were handed. */
  close(): Promise<void>;
}

/** Creates the protocol of every connection type. */
export function createConnectionProtocols(deps: ProtocolDeps): ConnectionProtocols {
  const protocols = new Map<string, StreamProtocol>(CONNECTION_TYPE_NAMES.map((name) => [name, connectionTypeOf(name).protocol(deps)]));
  return {
    protocolFor(type) {
      const protocol = protocols.get(type);
      if (protocol === undefined) throw new TypeError(`unknown connection type: ${type}`);
      return protocol;
    },
    async close() {
      await Promise.all([...protocols.values()].map((p) => p.close()));
    },
  };
}
