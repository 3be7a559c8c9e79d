import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import type { Exchange } from '../pipeline/exchange.js';
import type { MaskingStage, ResponseHead } from '../pipeline/masking-stage.js';
import type { MaskingProfiles } from './load-profiles.js';
import type { MaskingSummaryEntry } from './masking-summary.js';
import { maskBodyAsync } from './mask-body.js';
import { planResponseMasking, type ResponseMaskingPlan } from './response-masking.js';

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
}

/** The masking stage of the gateway: each connection's `masking` profiles applied to its responses. */
export function createMaskingStage(options: ProfileMaskingStageOptions): ProfileMaskingStage {
  const plan = (exchange: Exchange, head: ResponseHead, reencode: boolean, extra?: readonly string[]): ResponseMaskingPlan | null => {
    const names = extra === undefined || extra.length === 0 ? exchange.connection.masking : [...exchange.connection.masking, ...extra];
    const profile = options.profiles.forNames(names);
    if (profile === null) return null;
    return planResponseMasking(profile, {
      method: exchange.method,
      status: head.status,
      headers: head.headers as IncomingHttpHeaders,
      reencode,
      onSummary: options.onSummary === undefined ? undefined : (summary, complete) => options.onSummary!(exchange, summary, complete),
    });
  };
  return {
    responseTransform: (exchange, head, extra): Transform | null => plan(exchange, head, true, extra)?.transform ?? null,
    responsePlan: (exchange, head, extra) => plan(exchange, head, false, extra),
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
