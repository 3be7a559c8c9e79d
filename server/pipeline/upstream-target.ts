import type { HttpConnectionConfig } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import { lenientSegments, pathnameOf, pathRefused } from './normalise-path.js';

/** Everything about a connection's upstream that is derived once, not per request. */
export interface UpstreamTarget {
  /** scheme://host:port, the key of the connection pool. */
  readonly origin: string;
  /** The upstream URL's path without a trailing slash ("" for none); prefixed to every request path. */
  readonly basePath: string;
  /** Host header value the upstream expects. */
  readonly host: string;
  /** The connection's configured headers, lower-cased names, flat [name, value, ...]. */
  readonly injected: readonly string[];
  readonly injectedNames: ReadonlySet<string>;
  readonly connectTimeoutMs: number;
  readonly responseTimeoutMs: number;
}

/** Derives the upstream target of an HTTP connection. */
export function upstreamTargetOf(connection: HttpConnectionConfig): UpstreamTarget {
  const url = new URL(connection.upstream);
  const injected: string[] = [];
  for (const [name, value] of Object.entries(connection.headers)) injected.push(name.toLowerCase(), value);
  return {
    origin: url.origin,
    basePath: url.pathname.replace(/\/+$/, ''),
    host: url.host,
    injected,
    injectedNames: new Set(injected.filter((_, i) => i % 2 === 0)),
    connectTimeoutMs: parseDuration(connection.connect_timeout),
    responseTimeoutMs: parseDuration(connection.response_timeout),
  };
}

/**
 * The path and query the upstream receives: the base path, then the request's normalised path. Checked
 * here, where it is built, rather than trusted to every caller: read as leniently as any upstream might
 * (`%2F`, `%5C` and a backslash as "/", `%2E` as "."), it must still lie under the base path, or it is refused.
 */
export function forwardedPath(target: UpstreamTarget, path: string): string {
  const full = target.basePath + path;
  const base = lenientSegments(target.basePath) ?? [];
  const resolved = path.startsWith('/') ? lenientSegments(pathnameOf(full)) : null;
  if (resolved === null || resolved.length < base.length || base.some((segment, i) => resolved[i] !== segment)) {
    throw pathRefused('outside-base', `The forwarded path would leave the base path "${target.basePath || '/'}" of the upstream`);
  }
  return full;
}
