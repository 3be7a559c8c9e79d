import { isIP } from 'node:net';
import { SluiceError } from '../../shared/errors.js';

/** Whether `url` points at this machine (127.0.0.0/8, ::1, localhost), where plain http cannot be sniffed on a network. */
export function isLoopbackUrl(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

/** Options for {@link checkSecureUrl}. */
export interface CheckSecureUrlOptions {
  /** What the URL is, for the message: "issuer", "gateway". */
  what: string;
  /** Where the value came from, for the message: "--gateway", "/v1/info". */
  source?: string;
}

/**
 * Parse `value` and insist on https, except on loopback where a local dev gateway or IdP speaks http.
 * Tokens and codes cross these connections, so plain http to another host is refused outright.
 * Resolves the parsed URL and whether it is plain http on loopback (the caller then allows insecure requests).
 */
export function checkSecureUrl(value: string, options: CheckSecureUrlOptions): { url: URL; insecureLoopback: boolean } {
  const from = options.source ? ` (from ${options.source})` : '';
  let url: URL;
  try {
    url = new URL(value);
  } catch (err) {
    throw new SluiceError('ERR_USAGE', { message: `The ${options.what} URL "${value}"${from} is not a valid URL`, cause: err });
  }
  if (url.protocol === 'https:') return { url, insecureLoopback: false };
  if (url.protocol === 'http:') {
    if (isLoopbackUrl(url)) return { url, insecureLoopback: true };
    throw new SluiceError('ERR_USAGE', {
      message: `Refusing plain http for the ${options.what} ${url.origin}${from}: tokens would cross the network unencrypted. Use https (http is allowed only on 127.0.0.1, ::1 or localhost)`,
    });
  }
  throw new SluiceError('ERR_USAGE', { message: `The ${options.what} URL "${value}"${from} must be https:// (or http:// on loopback)` });
}
