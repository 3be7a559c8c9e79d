import { readFileSync } from 'node:fs';
import { connect, type ClientHttp2Session } from 'node:http2';
import { SluiceError } from '../../shared/errors.js';
import { parseDuration } from '../config/duration.js';
import type { GrpcConnectionConfig } from '../config/schema.js';

/** Everything about a gRPC connection's upstream that is derived once, not per call. */
export interface GrpcTarget {
  /** `http://host:port` (h2c) or `https://host:port`: the key of its pooled session, with the CA. */
  readonly origin: string;
  readonly scheme: 'http' | 'https';
  /** `:authority` the upstream expects. */
  readonly authority: string;
  /** The CA that signs a `grpcs://` upstream's certificate, when not a public one. */
  readonly ca?: Buffer;
  readonly caFile?: string;
  readonly connectTimeoutMs: number;
  /** The connection's `metadata`, lower-case names: sent with every call, in place of any the caller sent. */
  readonly injected: Readonly<Record<string, string>>;
}

/** Derives the upstream target of a gRPC connection. */
function grpcTargetOf(connection: GrpcConnectionConfig): GrpcTarget {
  const url = new URL(connection.upstream);
  const scheme = url.protocol === 'grpcs:' ? 'https' : 'http';
  let ca: Buffer | undefined;
  if (connection.ca_file !== undefined) {
    try {
      ca = readFileSync(connection.ca_file);
    } catch (err) {
      throw new SluiceError('ERR_CONFIG_INVALID', { message: `The CA file "${connection.ca_file}" of connection "${connection.name}" cannot be read: ${(err as Error).message}`, cause: err });
    }
  }
  const injected: Record<string, string> = {};
  for (const [name, value] of Object.entries(connection.metadata)) injected[name.toLowerCase()] = value;
  return {
    origin: `${scheme}://${url.host}`,
    scheme,
    authority: url.host,
    ...(ca === undefined ? {} : { ca, caFile: connection.ca_file }),
    connectTimeoutMs: parseDuration(connection.connect_timeout),
    injected,
  };
}

/**
 * HTTP/2 sessions to gRPC upstreams, one per (origin, CA), each carrying every call to its upstream as
 * HTTP/2 streams. A session that failed, was told to go away or closed is replaced at the next call.
 */
export interface GrpcSessions {
  /** The connection's target, derived once per configuration. */
  targetFor(connection: GrpcConnectionConfig): GrpcTarget;
  sessionFor(target: GrpcTarget): ClientHttp2Session;
  close(): Promise<void>;
}

/** Creates the pool; close it when the gateway stops (calls still in flight are aborted). */
export function createGrpcSessions(): GrpcSessions {
  // Connection configs are frozen objects; a reload brings new objects, so identity is a safe cache key.
  const targets = new WeakMap<GrpcConnectionConfig, GrpcTarget>();
  const open = new Map<string, ClientHttp2Session>();
  let closed = false;
  return {
    targetFor(connection) {
      let target = targets.get(connection);
      if (target === undefined) {
        target = grpcTargetOf(connection);
        targets.set(connection, target);
      }
      return target;
    },
    sessionFor(target) {
      if (closed) throw new SluiceError('ERR_SHUTTING_DOWN');
      const key = `${target.origin} ${target.caFile ?? ''}`;
      const existing = open.get(key);
      if (existing !== undefined && !existing.closed && !existing.destroyed) return existing;
      const session = connect(target.origin, { ...(target.ca === undefined ? {} : { ca: target.ca }), settings: { enablePush: false } });
      open.set(key, session);
      const forget = (): void => {
        if (open.get(key) === session) open.delete(key);
      };
      // Calls in flight on it see its failure themselves; the pool only stops handing it out.
      session.on('error', forget);
      session.once('goaway', forget);
      session.once('close', forget);
      const timer = setTimeout(() => {
        session.destroy(
          // An upstream that cannot be reached is UNAVAILABLE to a gRPC client, which may retry it; not a deadline of the call's.
          new SluiceError('ERR_UPSTREAM_UNAVAILABLE', {
            message: `The gRPC upstream ${target.authority} did not accept the connection within ${target.connectTimeoutMs} ms`,
          }),
        );
      }, target.connectTimeoutMs);
      session.once('connect', () => clearTimeout(timer));
      session.once('close', () => clearTimeout(timer));
      return session;
    },
    async close() {
      closed = true;
      const all = [...open.values()];
      open.clear();
      for (const session of all) session.destroy();
    },
  };
}
