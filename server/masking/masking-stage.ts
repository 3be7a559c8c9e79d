import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import type { Exchange } from '../pipeline/exchange.js';
import type { MaskingStage, ResponseHead } from '../pipeline/masking-stage.js';
import type { MaskingProfiles } from './load-profiles.js';
import type { MaskingSummaryEntry } from './masking-summary.js';
import { maskBodyAsync } from './mask-body.js';
import { planResponseMasking, type ResponseMaskingPlan } from './response-masking.js';
import { injectedCredentials } from './credential-masker.js';
import { maskResponseHeaders } from './header-masker.js';
import { MaskingCounter } from './masking-summary.js';

/** The credential literals of each connection, computed once per connection object. */
const credentialCache = new WeakMap<object, string[]>();

/** The credentials sluice injects upstream for the exchange's connection (its `headers`). */
function credentialsOf(exchange: Exchange): string[] {
  const connection = exchange.connection;
  if (!('headers' in connection)) return [];
  let found = credentialCache.get(connection);
  if (found === undefined) {
    found = injectedCredentials(connection.headers);
    credentialCache.set(connection, found);
  }
  return found;
}

/** Options of the gateway's masking stage. */
export interface ProfileMaskingStageOptions {
  readonly profiles: MaskingProfiles;
  /** Receives each masked exchange's summary (for the recorder) once its body ended or was cut off. */
  readonly onSummary?: (exchange: Exchange, summary: MaskingSummaryEntry[], complete: boolean) => void;
}

/** The masking stage, plus `responsePlan` for a pipeline that can also rewrite the caller's headers. */
export interface ProfileMaskingStage extends MaskingStage {
  /**
   * Like `responseTransform`, but the body stays decoded (no re-compression); the caller sends
   * `plan.headers(upstreamHeaders)` (no Content-Encoding, no Content-Length) and can read `plan.summary()`.
   */
  responsePlan(exchange: Exchange, head: ResponseHead, extraProfiles?: readonly string[]): ResponseMaskingPlan | null;
  responseHeaders(exchange: Exchange, headers: IncomingHttpHeaders, extraProfiles?: readonly string[]): IncomingHttpHeaders;
}

/** The masking stage of the gateway: each connection's `masking` profiles applied to its responses. */
export function createMaskingStage(options: ProfileMaskingStageOptions): ProfileMaskingStage {
  // Per exchange, so the counts of its masked headers join its body's summary.
  const counters = new WeakMap<Exchange, MaskingCounter>();
  const profileOf = (exchange: Exchange, extra?: readonly string[]) =>
    options.profiles.forNames(extra === undefined || extra.length === 0 ? exchange.connection.masking : [...exchange.connection.masking, ...extra]);
  const plan = (exchange: Exchange, head: ResponseHead, reencode: boolean, extra?: readonly string[]): ResponseMaskingPlan | null => {
    const profile = profileOf(exchange, extra);
    return planResponseMasking(profile, {
      method: exchange.method,
      status: head.status,
      headers: head.headers as IncomingHttpHeaders,
      reencode,
      credentials: credentialsOf(exchange),
      counter: counters.get(exchange),
      onSummary: options.onSummary === undefined ? undefined : (summary, complete) => options.onSummary!(exchange, summary, complete),
    });
  };
  return {
    responseTransform: (exchange, head, extra): Transform | null => plan(exchange, head, true, extra)?.transform ?? null,
    responsePlan: (exchange, head, extra) => plan(exchange, head, false, extra),
    responseHeaders: (exchange, headers, extra) => {
      const profile = profileOf(exchange, extra);
      const credentials = credentialsOf(exchange);
      if (profile === null && credentials.length === 0) return headers;
      const counter = new MaskingCounter();
      counters.set(exchange, counter);
      return maskResponseHeaders(headers, { profile, credentials, counter });
    },
    maskRequestBody: async (exchange, body, extra) => {
      const profile = options.profiles.forNames(extra === undefined || extra.length === 0 ? exchange.connection.masking : [...exchange.connection.masking, ...extra]);
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
