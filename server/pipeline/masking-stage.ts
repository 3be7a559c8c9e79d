import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import type { Exchange } from './exchange.js';
import type { MaskingCounts } from './recorder.js';
import type { ResponseHead } from './response-frames.js';

/**
 * A response body masked chunk by chunk with no stream between: each call gives at once what may be sent
 * now. Only offered where the work of a call is bounded by its chunk and the masker's hold-back.
 */
export interface BodyChunks {
  /** What may be sent after `chunk`: often nothing yet (a held-back tail, an empty chunk). */
  write(chunk: Buffer): Buffer;
  /** The rest, once the body is complete. */
  end(): Buffer;
}

/**
 * How one response body is masked (output decoded), and what kind of rewrite it is: as `chunks` where the
 * plan offers them, else as a Transform. One body is masked through one of the two, never both.
 */
export interface BodyMasking {
  /** The masking as a Node Transform; where `chunks` is set, made only when first read. */
  readonly transform: Transform;
  /** The same masking with no stream; absent for a compressed body, gRPC messages, or a body masked in slices. */
  readonly chunks?: BodyChunks;
  /** `scanned` when only injected credentials are searched for: the body is then not masked content. */
  readonly rewrite: 'masked' | 'scanned';
}

/** The masking of one exchange's response: its head, its body and its trailers share one count. */
export interface ResponseMasking {
  /** Header values (of the head or the trailers) as the caller and the recording may see them. */
  headers(headers: IncomingHttpHeaders): IncomingHttpHeaders;
  /**
   * The masking of the body that follows `head` (its headers masked already), or null when it passes unchanged.
   * Throws ERR_MASKING_BLOCKED, before any byte reaches the caller, for a body masking cannot read.
   */
  body(head: ResponseHead): BodyMasking | null;
  /** What was replaced so far (entity, rule, count; never a value); the pipeline records it with the end. */
  summary(): MaskingCounts;
}

/** Masking stage. `extraProfiles` come from the policy rule that matched (`mask:`). */
export interface MaskingStage {
  /**
   * The masking plan of one exchange's response; null when nothing applies (no profile and no injected
   * credential), so unmasked connections pay for no plan and no extra stream.
   */
  responseMasking(exchange: Exchange, extraProfiles?: readonly string[], restore?: RestoreMap | null): ResponseMasking | null;
  /**
   * The request body as it is forwarded, masked by the connection's `masking.request` profiles (or by
   * `more.profiles`, a rule's `mask_request`, in the connection's style), with the placeholders its answer
   * restores; null when no profile applies. `more.placeholders` continues the numbering of an earlier pass
   * over the same exchange, so one value keeps one token. Rejects with ERR_REQUEST_UNMASKABLE for a body
   * masking cannot read.
   */
  maskRequest?(exchange: Exchange, body: Buffer, more?: { readonly profiles: readonly string[]; readonly placeholders?: Placeholders }): Promise<MaskedRequestBody | null>;
  /**
   * A whole request body masked for the recording; null when no profile applies or the body is not text.
   * Asynchronous: a large body is masked in slices, so it never holds the event loop.
   */
  maskRequestBody?(exchange: Exchange, body: Buffer, extraProfiles?: readonly string[]): Promise<Buffer | null>;
}

/** An exchange's placeholders, each standing for a value request masking took out (server/masking/placeholder-map.ts). */
export interface RestoreMap {
  valueOf(token: string): string | undefined;
  readonly size: number;
}

/** An exchange's placeholders as request masking writes them: one token per value, kept for the exchange. */
export interface Placeholders extends RestoreMap {
  tokenFor(value: string, label: string): string;
}

/** A request body masked for forwarding. */
export interface MaskedRequestBody {
  readonly body: Buffer;
  /** The placeholders the answer restores (`restore: true`); null otherwise. */
  readonly restore: RestoreMap | null;
  /** Every placeholder given out, to number a further pass (a rule's `mask_request`) on. */
  readonly placeholders: Placeholders;
}

/** The default masking stage: responses pass unchanged. */
export const noMasking: MaskingStage = Object.freeze({
  responseMasking: () => null,
});
