import type { IncomingHttpHeaders } from 'node:http';
import type { CompiledProfile } from './compiled-profile.js';
import { maskCredentialsIn } from './credential-masker.js';
import type { MaskingCounter } from './masking-summary.js';

/**
 * Headers that frame the body rather than carry text for the caller: masking them would break the
 * response (a Content-Length read as a phone number), and they are rewritten by body masking anyway.
 */
const FRAMING = new Set(['content-length', 'content-encoding', 'transfer-encoding', 'content-type', 'connection', 'keep-alive']);

/** Options of `maskResponseHeaders`. */
export interface HeaderMaskingOptions {
  /** The connection's masking profile; null when it has none (then only credentials are masked). */
  readonly profile: CompiledProfile | null;
  /** Literals of the credentials sluice injects upstream (see `injectedCredentials`). */
  readonly credentials: readonly string[];
  readonly counter: MaskingCounter;
}

/**
 * The upstream's response headers as the caller (and the recording) may see them: every value through
 * the profile's text rules and the credential search. Under a masking profile the upstream's
 * `set-cookie` is dropped: a cookie is an opaque session value no rule can judge, and sluice's caller
 * is not the upstream's browser session.
 */
export function maskResponseHeaders(headers: IncomingHttpHeaders, options: HeaderMaskingOptions): IncomingHttpHeaders {
  const { profile, credentials, counter } = options;
  if (profile === null && credentials.length === 0) return headers;
  const maskValue = (value: string): string => {
    const masked = profile === null || profile.text.empty ? value : profile.text.mask(value, counter);
    return credentials.length === 0 ? masked : maskCredentialsIn(masked, credentials, counter);
  };
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (FRAMING.has(name)) {
      out[name] = value;
    } else if (name === 'set-cookie' && profile !== null) {
      counter.add('cookie', 'builtin:set_cookie');
    } else {
      out[name] = Array.isArray(value) ? value.map(maskValue) : maskValue(value);
    }
  }
  return out;
}
