import { SluiceError } from '../../shared/errors.js';

/**
 * Refuses request targets that policy and the upstream could read differently: anything but an
 * origin-form path (`http://host/…` absolute-form, `*`), and paths with `.` or `..` segments, raw or
 * percent-encoded, which upstreams resolve after policy has judged the unresolved string.
 */
export function checkRequestPath(path: string): void {
  if (!path.startsWith('/')) {
    throw new SluiceError('ERR_BAD_REQUEST', { message: 'The request target must be a path starting with "/"' });
  }
  const end = path.search(/[?#]/);
  const pathname = end === -1 ? path : path.slice(0, end);
  for (const segment of pathname.split('/')) {
    const s = segment.toLowerCase().replaceAll('%2e', '.');
    if (s === '.' || s === '..') {
      throw new SluiceError('ERR_BAD_REQUEST', { message: 'The request path must not contain "." or ".." segments' });
    }
  }
}
