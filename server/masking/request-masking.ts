import type { IncomingHttpHeaders } from 'node:http';
import { SluiceError } from '../../shared/errors.js';
import type { CompiledProfile } from './compiled-profile.js';
import { contentKind } from './content-kind.js';
import { maskBodyAsync } from './mask-body.js';
import { PlaceholderMap } from './placeholder-map.js';
import { withPlaceholders } from './placeholder-profile.js';
import type { Placeholders } from '../pipeline/masking-stage.js';
import type { MaskingSummaryEntry } from './masking-summary.js';
import type { RequestMaskingConfig } from './request-masking-config.js';

/** A request body as it leaves for the upstream, and the placeholders to put back in its answer. */
export interface MaskedRequest {
  readonly body: Buffer;
  /** The exchange's placeholders when its answer restores them (`restore: true`); null otherwise. */
  readonly restore: Placeholders | null;
  /** Every placeholder given out: a further pass over the same exchange numbers on from it. */
  readonly placeholders: Placeholders;
  /** What was replaced (entity, rule, count; never a value). */
  readonly summary: MaskingSummaryEntry[];
}

/**
 * Masks a whole request body before it is forwarded: JSON (every string value at any depth, so OpenAI
 * chat / completions / Responses messages and content parts, tool results, function and tool-call
 * arguments, Anthropic messages alike) or text, with the decoding and normalisation answers get.
 * Fails closed: a body masking cannot read (compressed, binary unless the profile allows binary) is
 * refused rather than forwarded with its values in it. `placeholders` continues an earlier pass over the
 * same exchange (a rule's `mask_request` after the connection's profiles): one value, one token.
 */
export async function maskRequestBody(
  profile: CompiledProfile,
  settings: Pick<RequestMaskingConfig, 'style' | 'restore'>,
  headers: IncomingHttpHeaders,
  body: Buffer,
  placeholders: Placeholders = new PlaceholderMap(),
): Promise<MaskedRequest> {
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    throw new SluiceError('ERR_REQUEST_UNMASKABLE', {
      message: `The request body is compressed (${encoding}); request masking reads only bodies sent as they are`,
      details: { content_encoding: encoding },
    });
  }
  const contentType = headers['content-type'];
  // An unlabelled body is read as JSON first, as upstreams do: the JSON masker falls back to text on what it cannot parse.
  const kind = contentType === undefined ? 'json' : contentKind(contentType);
  if (kind === 'binary') {
    if (profile.binary === 'allow') return { body, restore: null, placeholders, summary: [] };
    throw new SluiceError('ERR_REQUEST_UNMASKABLE', {
      message: `The request has a binary content type (${contentType}) that masking cannot inspect; the profile allows it only with binary: allow`,
      details: { content_type: contentType },
    });
  }
  // Masking reads UTF-8; an upstream that would read the bytes in another charset (UTF-16 JSON is NUL-laden
  // for every ASCII character) could find values masking never saw, so such a body is refused.
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1]?.toLowerCase();
  if ((charset !== undefined && charset !== 'utf-8' && charset !== 'utf8' && charset !== 'us-ascii') || body.includes(0)) {
    throw new SluiceError('ERR_REQUEST_UNMASKABLE', {
      message: `The request body is not UTF-8${charset === undefined ? '' : ` (charset ${charset})`}; request masking reads only UTF-8 bodies`,
      details: charset === undefined ? {} : { charset },
    });
  }
  const map = placeholders;
  const bound = withPlaceholders(profile, map, settings.style === 'placeholder');
  const masked = await maskBodyAsync({ profile: bound, format: kind === 'json' ? 'json' : 'text', body });
  return { body: masked.output, restore: settings.restore && map.size > 0 ? map : null, placeholders: map, summary: masked.summary };
}
