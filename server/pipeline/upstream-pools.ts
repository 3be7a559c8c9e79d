import { Pool } from 'undici';
import type { HttpConnectionConfig } from '../config/schema.js';
import { upstreamTargetOf, type UpstreamTarget } from './upstream-target.js';

/** Tuning of the keep-alive pools to upstreams; defaults in `DEFAULT_POOL_OPTIONS`. */
export interface UpstreamPoolOptions {
  /** Idle upstream sockets are closed after this many milliseconds. */
  readonly keepAliveTimeoutMs?: number;
  /** Most sockets per upstream origin; null for no limit. */
  readonly maxConnectionsPerUpstream?: number | null;
  /** Largest response head accepted from an upstream, in bytes. */
  readonly maxResponseHeaderSize?: number;
}

/** Defaults of `UpstreamPoolOptions`. */
export const DEFAULT_POOL_OPTIONS = {
  keepAliveTimeoutMs: 30_000,
  maxConnectionsPerUpstream: null,
  maxResponseHeaderSize: 64 * 1024,
} as const satisfies Required<UpstreamPoolOptions>;

/** A connection's upstream with the pool that reaches it. */
export interface UpstreamRoute {
  readonly target: UpstreamTarget;
  readonly pool: Pool;
}

/** Keep-alive pools to upstreams, one per distinct (upstream, connect timeout), reused across requests. */
export interface UpstreamPools {
  routeFor(connection: HttpConnectionConfig): UpstreamRoute;
  close(): Promise<void>;
}

/** Creates the pools; close them when the gateway stops. */
export function createUpstreamPools(options: UpstreamPoolOptions = {}): UpstreamPools {
  const settings = { ...DEFAULT_POOL_OPTIONS, ...options };
  // Connection configs are frozen objects; a reload brings new objects, so identity is a safe cache key
  // for the derived target, while pools are shared by every connection naming the same upstream.
  const routes = new WeakMap<HttpConnectionConfig, UpstreamRoute>();
  const pools = new Map<string, Pool>();

  return {
    routeFor(connection) {
      const cached = routes.get(connection);
      if (cached !== undefined) return cached;
      const target = upstreamTargetOf(connection);
      const key = `${target.origin} ${target.connectTimeoutMs}`;
      let pool = pools.get(key);
      if (pool === undefined) {
        pool = new Pool(target.origin, {
          connections: settings.maxConnectionsPerUpstream,
          keepAliveTimeout: settings.keepAliveTimeoutMs,
          maxHeaderSize: settings.maxResponseHeaderSize,
          connect: { timeout: target.connectTimeoutMs },
          // One request per socket at a time: a slow streamed response must never block another caller.
          pipelining: 1,
        });
        pools.set(key, pool);
      }
      const route = { target, pool };
      routes.set(connection, route);
      return route;
    },
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.destroy()));
    },
  };
}
