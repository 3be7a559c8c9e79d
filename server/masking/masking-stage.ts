import type { Exchange } from '../pipeline/exchange.js';
import type { MaskingStage, ResponseMasking } from '../pipeline/masking-stage.js';
import type { MaskingProfiles } from './load-profiles.js';
import { maskBodyAsync } from './mask-body.js';
import { planResponseMasking } from './response-masking.js';
import { CredentialLiterals, injectedCredentials } from './credential-masker.js';
import { maskResponseHeaders } from './header-masker.js';
import { MaskingCounter } from './masking-summary.js';
import { createGrpcDescriptorCache, type GrpcDescriptorCache } from '../protocols/grpc/grpc-descriptors.js';
import { grpcMaskingTransform } from './grpc-response-masking.js';
import { maskRequestBody } from './request-masking.js';
import { restoringProfile, RestoringTemplates } from './restore-profile.js';
import { PlaceholderMap } from './placeholder-map.js';

/** The credential literals of each connection, computed and compiled once per connection object. */
const credentialCache = new WeakMap<object, CredentialLiterals>();

const NO_CREDENTIALS = new CredentialLiterals([]);

/** The credentials sluice injects upstream for the exchange's connection (its `headers`). */
function credentialsOf(exchange: Exchange): CredentialLiterals {
  const connection = exchange.connection;
  if (!('headers' in connection)) return NO_CREDENTIALS;
  let found = credentialCache.get(connection);
  if (found === undefined) {
    found = new CredentialLiterals(injectedCredentials(connection.headers));
    credentialCache.set(connection, found);
  }
  return found;
}

/** Options of the gateway's masking stage. */
export interface ProfileMaskingStageOptions {
  readonly profiles: MaskingProfiles;
  /** How gRPC messages are decoded (the gRPC protocol's own cache); default: one of its own, from the working directory. */
  readonly grpcDescriptors?: GrpcDescriptorCache;
}

/** The masking stage of the gateway: each connection's `masking` profiles (and a policy rule's) applied to its responses. */
export function createMaskingStage(options: ProfileMaskingStageOptions): MaskingStage {
  const profileOf = (exchange: Exchange, extra?: readonly string[]) =>
    options.profiles.forNames(extra === undefined || extra.length === 0 ? exchange.connection.masking : [...exchange.connection.masking, ...extra]);
  let grpcDescriptors = options.grpcDescriptors;
  // The restoring rule merged with each answer profile, compiled once: an exchange binds only its placeholders.
  const restoringTemplates = new RestoringTemplates();
  return {
    responseMasking(exchange, extra, restore): ResponseMasking | null {
      const answer = profileOf(exchange, extra);
      const credentials = credentialsOf(exchange);
      const restoring = restore !== undefined && restore !== null && restore.size > 0 && exchange.connection.type === 'http';
      if (answer === null && credentials.empty && !restoring) return null;
      // One count per exchange: its head's, body's and trailers' replacements make one summary.
      const counter = new MaskingCounter();
      // Placeholders are put back before the answer's own profile reads the text, by a rule listed ahead of it.
      const profile = restoring ? restoringProfile(restore, answer, counter, restoringTemplates) : answer;
      return {
        headers: (headers) => maskResponseHeaders(headers, { profile: answer, credentials: credentials.literals, counter }),
        body: (head) => {
          const connection = exchange.connection;
          if (connection.type === 'grpc') {
            // Messages, not a body: each decoded with the call's method, masked, and encoded again.
            if (profile === null) return null;
            grpcDescriptors ??= createGrpcDescriptorCache();
            const method = grpcDescriptors.forConnection(connection).method(exchange.path);
            return { transform: grpcMaskingTransform(profile, { method, headers: head.headers, maxMessage: connection.max_message, counter }), rewrite: 'masked' };
          }
          const plan = planResponseMasking(profile, { method: exchange.method, status: head.status, headers: head.headers, credentials, counter });
          if (plan === null) return null;
          const rewrite = plan.credentialsOnly === true ? 'scanned' : 'masked';
          if (plan.chunks === undefined) return { transform: plan.transform, rewrite };
          return {
            chunks: plan.chunks,
            rewrite,
            // Only read where a stream is wanted (a test's pipeline): the gateway drives `chunks`.
            get transform() {
              return plan.transform;
            },
          };
        },
        summary: () => counter.entries(),
      };
    },
    async maskRequest(exchange, body, more) {
      // Only HTTP bodies are read whole and rewritten: elsewhere nothing can be masked (the pipeline refuses first).
      if (exchange.connection.type !== 'http') return null;
      const settings = exchange.connection.request_masking;
      const names = more === undefined ? (settings?.profiles ?? []) : more.profiles;
      const profile = options.profiles.forNames(names);
      if (profile === null) return null;
      // A rule's `mask_request` on a connection without request masking writes in each profile's own style, restoring nothing.
      return maskRequestBody(profile, settings ?? { style: 'profile', restore: false }, exchange.headers, body, more?.placeholders ?? new PlaceholderMap());
    },
    async maskRequestBody(exchange, body, extra) {
      const profile = profileOf(exchange, extra);
      if (profile === null) return null;
      const type = String(exchange.headers['content-type'] ?? '').toLowerCase();
      const encoding = exchange.headers['content-encoding'];
      // Compressed or binary request bodies are not masked here: the recording keeps their digest only.
      if (encoding !== undefined && encoding !== 'identity') return null;
      if (type !== '' && !/json|text|x-www-form-urlencoded|xml|event-stream/.test(type)) return null;
      return (await maskBodyAsync({ profile, format: /json/.test(type) || type === '' ? 'json' : 'text', body })).output;
    },
  };
}
