import { z } from 'zod';
import { durationSchema } from '../config/duration.js';

/**
 * The configuration fields of each connection type besides the common ones (name, groups, masking,
 * record, grants): the connection-type registry's part of `sluice.yaml`. Plain zod with no other imports,
 * so loading the configuration never loads a protocol.
 */

const httpUrl = z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' });

const tcpTarget = z.string().regex(/^tcp:\/\/[^\s/]+:\d{1,5}\/?$/, 'must be tcp://host:port');

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
