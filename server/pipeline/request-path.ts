import { isSluiceError, type SluiceError } from '../../shared/errors.js';
import type { HttpConnectionConfig } from '../config/schema.js';
import { normaliseRequestTarget, pathRefused } from './normalise-path.js';

/**
 * The request target of a call on `connection`, in normal form under the connection's path hygiene: what
 * policy judges, the recording keeps and the upstream receives. The tunnel's HTTP protocol and the proxy
 * route call it before the exchange starts; throws ERR_PATH_REFUSED.
 */
export function requestPathFor(target: string, connection: Pick<HttpConnectionConfig, 'allow_encoded_slashes'>): string {
  return normaliseRequestTarget(target, { allowEncodedSlashes: connection.allow_encoded_slashes });
}

/**
 * Refuses a path that is not already in normal form, so a caller of the pipeline that forgot
 * `requestPathFor` fails closed instead of letting policy judge one string and the upstream read another.
 * Encoded slashes pass: whether the connection allows them was the caller's decision.
 */
export function checkRequestPath(path: string): void {
  if (normaliseRequestTarget(path, { allowEncodedSlashes: true }) !== path) throw pathRefused('not-normalised');
}

/**
 * The refusal of a URL the gateway's router could not percent-decode: the path rule it breaks when the
 * path itself is at fault (malformed escapes, bytes that are not UTF-8), else a malformed escape elsewhere.
 */
export function undecodableUrlRefusal(url: string): SluiceError {
  try {
    normaliseRequestTarget(url);
  } catch (err) {
    if (isSluiceError(err)) return err;
  }
  return pathRefused('malformed-escape');
}
