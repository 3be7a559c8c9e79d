import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import type { Exchange } from './exchange.js';

/** The upstream's response head, as the masking stage sees it before the body flows. */
export interface ResponseHead {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
}

/** Masking stage: a Transform per response body, or null when the body passes unchanged. `extraProfiles` come from the policy rule that matched (`mask:`). */
export interface MaskingStage {
  /**
   * Null rather than an identity Transform for "nothing to mask", so unmasked connections pay for no
   * extra stream per response. A Transform that changes the length must expect Content-Length to be dropped.
   */
  responseTransform(exchange: Exchange, head: ResponseHead, extraProfiles?: readonly string[]): Transform | null;
  /**
   * Like `responseTransform`, with the response headers the caller must get to match the transform's
   * output (a decoded body loses Content-Encoding and Content-Length). Preferred when present.
   */
  responsePlan?(
    exchange: Exchange,
    head: ResponseHead,
    extraProfiles?: readonly string[],
  ): { transform: Transform; headers(upstream: IncomingHttpHeaders): IncomingHttpHeaders; credentialsOnly?: boolean } | null;
  /**
   * The upstream's response headers as the caller and the recording may see them (values masked,
   * injected credentials removed); called before the body is planned. Absent: headers pass as they are.
   */
  responseHeaders?(exchange: Exchange, headers: IncomingHttpHeaders, extraProfiles?: readonly string[]): IncomingHttpHeaders;
  /**
   * A whole request body masked for the recording; null when no profile applies or the body is not text.
   * Asynchronous: a large body is masked in slices, so it never holds the event loop.
   */
  maskRequestBody?(exchange: Exchange, body: Buffer, extraProfiles?: readonly string[]): Promise<Buffer | null>;
}

/** The default masking stage: response bodies pass unchanged. */
export const noMasking: MaskingStage = Object.freeze({
  responseTransform: () => null,
});
