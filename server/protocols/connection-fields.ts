import { z } from 'zod';
import { durationSchema } from '../config/duration.js';

/**
 * The configuration fields of each connection type besides the common ones (name, groups, masking,
 * record, grants): the connection-type registry's part of `sluice.yaml`. Plain zod with no other imports,
 * so loading the configuration never loads a protocol.
 */

const httpUrl = z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' });

const tcpTarget = z.string().regex(/^tcp:\/\/[^\s/]+:\d{1,5}\/?$/, 'must be tcp://host:port');

const grpcTarget = z.string().regex(/^grpcs?:\/\/[^\s/]+:\d{1,5}\/?$/, 'must be grpc://host:port (h2c) or grpcs://host:port (TLS)');

/** A `descriptors:` entry: a built-in set by name, or a path to a .proto file or a descriptor set. */
const descriptorEntry = z.string().min(1);

/** Fields of an `http` connection. */
export const HTTP_CONNECTION_FIELDS = {
  type: z.literal('http'),
  upstream: httpUrl,
  headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a header name'), z.string()).default({}),
  max_body: z.number().int().positive().default(32 * 1024 * 1024),
  connect_timeout: durationSchema.default('10s'),
  response_timeout: durationSchema.default('300s'),
  /**
   * Keeps `%2F` in a path segment (encoded, as sent) instead of refusing it, for APIs whose identifiers
   * hold slashes; off by default because an upstream that decodes it sees a path policy never judged.
   */
  allow_encoded_slashes: z.boolean().default(false),
} as const;

/** Fields of a `tcp` connection. */
export const TCP_CONNECTION_FIELDS = {
  type: z.literal('tcp'),
  upstream: tcpTarget,
  connect_timeout: durationSchema.default('10s'),
} as const;

/** Fields of a `grpc` connection. */
export const GRPC_CONNECTION_FIELDS = {
  type: z.literal('grpc'),
  upstream: grpcTarget,
  /** PEM CA that signs a `grpcs://` upstream's certificate, when it is not a public one. */
  ca_file: z.string().min(1).optional(),
  /** What calls are decoded with: `kserve-v2` (built in), .proto files, descriptor sets (`protoc --descriptor_set_out`). */
  descriptors: z.array(descriptorEntry).min(1, 'must name at least one: kserve-v2, a .proto file or a descriptor set').default(['kserve-v2']),
  /** Metadata sent with every call (the upstream's credentials); the caller's `authorization` is never forwarded. */
  metadata: z.record(z.string().regex(/^[0-9a-z_.-]+$/, 'must be lower-case gRPC metadata name'), z.string()).default({}),
  /** Largest message either way; a longer one ends the call with RESOURCE_EXHAUSTED. gRPC's own default. */
  max_message: z.number().int().positive().default(4 * 1024 * 1024),
  connect_timeout: durationSchema.default('10s'),
  /**
   * Calls of methods the descriptors do not define: `refuse` (UNIMPLEMENTED, recorded) or `pass` (forwarded;
   * their messages cannot be decoded, so a masked response ends INTERNAL). Absent: refuse when the
   * connection masks, pass otherwise.
   */
  unknown_methods: z.enum(['refuse', 'pass']).optional(),
} as const;
