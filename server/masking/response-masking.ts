import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import { SluiceError } from '../../shared/errors.js';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import { contentKind, type ContentKind } from './content-kind.js';
import { CredentialBodyMasker } from './credential-masker.js';
import { DecodingBodyMasker, SniffingBodyMasker } from './decoding-body-masker.js';
import { afterDecoding, bodyEncoding } from './decoded-transform.js';
import { LogprobsJsonMasker } from './logprobs-json-masker.js';
import { MaskingCounter } from './masking-summary.js';
import { MaskingTransform } from './masking-transform.js';
import { NdjsonMasker } from './ndjson-masker.js';
import { SseMasker } from './sse-masker.js';
import { TextBodyMasker } from './text-body-masker.js';

/** What masking one response needs to know besides its profile. */
export interface ResponseMaskingOptions {
  readonly method: string;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** Literals of the credentials sluice injects upstream, masked in the body whether or not a profile applies. */
  readonly credentials?: readonly string[];
  /** The exchange's counter, where its headers' replacements are counted too; one of its own by default. */
  readonly counter?: MaskingCounter;
}

/**
 * How one response is masked. The Transform's output is always decoded (a compressed body is not compressed
 * again), so the caller gets it without Content-Encoding and without Content-Length.
 */
export interface ResponseMaskingPlan {
  readonly transform: Transform;
  /** True when no profile applies and only injected credentials are searched: the body is not masked content. */
  readonly credentialsOnly?: boolean;
}

/** The body masker for a content kind; what `sluice mask test` and benchmarks drive directly. */
export function createBodyMasker(kind: Exclude<ContentKind, 'binary'>, profile: CompiledProfile, counter: MaskingCounter, contentType?: string): BodyMasker {
  if (kind === 'sse') return new SseMasker(profile, counter);
  if (kind === 'ndjson') return new NdjsonMasker(profile, counter);
  // Logprobs lists first (each masked as the text its tokens spell), then the body as any JSON.
  const json = () => new LogprobsJsonMasker(profile, counter);
  // Bodies are masked in the encoding the client decodes them in, and text that is JSON as JSON.
  const inner = kind === 'json' ? json() : new SniffingBodyMasker(json, () => new TextBodyMasker(profile, counter));
  return new DecodingBodyMasker(inner, contentType, profile.maxJsonBody);
}

/**
 * Plans masking of one response: null when its body passes unchanged (no body, or binary allowed by
 * the profile). Throws ERR_MASKING_BLOCKED, before any byte reaches the caller, for binary bodies and
 * encodings masking cannot read.
 */
export function planResponseMasking(profile: CompiledProfile | null, options: ResponseMaskingOptions): ResponseMaskingPlan | null {
  const { method, status, headers } = options;
  if (method === 'HEAD' || status === 204 || status === 304 || headers['content-length'] === '0') return null;
  const credentials = options.credentials ?? [];
  if (profile === null) return credentials.length === 0 ? null : planCredentialScan(credentials, options);
  const contentType = headers['content-type'];
  const kind = contentKind(contentType);
  if (kind === 'binary') {
    if (profile.binary === 'allow') return null;
    throw new SluiceError('ERR_MASKING_BLOCKED', {
      message: `The response has a binary content type (${contentType}) that masking cannot inspect; the profile allows it only with binary: allow`,
      details: { content_type: contentType },
    });
  }
  const encoding = bodyEncoding(headers['content-encoding']);
  if (encoding === null) {
    throw new SluiceError('ERR_MASKING_BLOCKED', {
      message: `The response is compressed with an encoding masking cannot decode (${String(headers['content-encoding'])})`,
      details: { content_encoding: headers['content-encoding'] },
    });
  }
  const declared = Number(headers['content-length'] ?? NaN);
  if (kind === 'json' && declared > profile.maxJsonBody && encoding === 'identity' && (profile.jsonPaths.length > 0 || profile.selectors.length > 0)) {
    throw new SluiceError('ERR_MASKING_BLOCKED', {
      message: `The JSON response (${declared} bytes) exceeds max_json_body (${profile.maxJsonBody} bytes) and the masking profile needs it parsed (json_paths or selectors)`,
    });
  }
  const counter = options.counter ?? new MaskingCounter();
  const masker = createBodyMasker(kind, profile, counter, contentType);
  const masking = new MaskingTransform(credentials.length === 0 ? masker : new CredentialBodyMasker(masker, credentials, counter));
  return { transform: afterDecoding(encoding, masking) };
}

/**
 * A connection without masking still keeps the credentials it injects out of its answers: the body,
 * decoded when compressed (else the search would see compressed bytes), passes a literal search. A body
 * in an encoding sluice cannot decode passes as it is.
 */
function planCredentialScan(credentials: readonly string[], options: ResponseMaskingOptions): ResponseMaskingPlan | null {
  const encoding = bodyEncoding(options.headers['content-encoding']);
  if (encoding === null) return null;
  const scan = new MaskingTransform(new CredentialBodyMasker(null, credentials, options.counter ?? new MaskingCounter()));
  return { credentialsOnly: true, transform: afterDecoding(encoding, scan) };
}
