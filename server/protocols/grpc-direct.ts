import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { isIP } from 'node:net';
import { SluiceError } from '../../shared/errors.js';
import type { ConnectionConfig, GrpcConnectionConfig } from '../config/schema.js';
import type { Authenticate } from '../identity/authenticate.js';
import type { Principal } from '../identity/principal.js';
import { newRequestId, type SessionRef } from '../pipeline/exchange.js';
import { discardSessionRecorder } from '../pipeline/recorder.js';
import type { ExchangeHandler } from '../pipeline/run-exchange.js';
import { runGrpcExchange } from './grpc-carrier.js';
import type { GrpcDescriptorCache } from './grpc/grpc-descriptors.js';
import { refusalTrailers } from './grpc/grpc-status.js';

/** Metadata naming the connection a call of the gRPC listener is for; never forwarded (`x-sluice-*`). */
export const CONNECTION_METADATA = 'x-sluice-connection';

/** What the gateway's gRPC listener needs to run calls through the pipeline, as `/v1/proxy` does for HTTP. */
export interface GrpcDirectDeps {
  /** The configured connections, read per call so a reload takes effect. */
  readonly connections: () => readonly ConnectionConfig[];
  /** The HTTP API's authentication (same verifier, same errors, same counting and audit). */
  readonly authenticate: Authenticate;
  /** The exchange handler every other carrier uses. */
  readonly exchange: ExchangeHandler;
  readonly descriptors: GrpcDescriptorCache;
  /**
   * The recording session of a call (`ProxySessions`: one per caller and connection, sealed once idle);
   * `call` closes when the call has ended. Default: every call a session of its own, recorded nowhere.
   */
  readonly sessionFor?: (principal: Principal, connection: GrpcConnectionConfig, clientAddress: string, call: ServerHttp2Stream) => SessionRef;
}

/** Runs the calls that reach the gateway's own gRPC listener (`grpc_listen`); it never listens itself. */
export interface GrpcDirectCalls {
  /** Authenticates one call, finds its connection and runs it as one exchange; a refusal is a gRPC status. */
  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, clientAddress: string): void;
}

/**
 * The connection a call names: its `x-sluice-connection` metadata, else the first label of its
 * `:authority` when that is a host name with a domain (`triton.gateway.example.com`). An IP address or a
 * single-label host names nothing, so a client that forgot the metadata is told so instead of being
 * routed by chance.
 */
export function connectionNameOf(headers: IncomingHttpHeaders): string {
  const named = headers[CONNECTION_METADATA];
  if (Array.isArray(named)) throw new SluiceError('ERR_BAD_REQUEST', { message: `A call names one connection: ${CONNECTION_METADATA} was sent ${named.length} times` });
  if (typeof named === 'string' && named.length > 0) return named;
  const authority = headers[':authority'];
  const host = typeof authority === 'string' ? authority.replace(/:\d+$/, '') : '';
  const dot = host.indexOf('.');
  if (host !== '' && isIP(host.replace(/^\[|\]$/g, '')) === 0 && dot > 0) return host.slice(0, dot);
  throw new SluiceError('ERR_BAD_REQUEST', {
    message: `Name the connection of the call with ${CONNECTION_METADATA} metadata (or call <connection>.<gateway host> as its authority)`,
  });
}

/** The gRPC connection a call names, or why it cannot have it. */
function grpcConnection(connections: readonly ConnectionConfig[], name: string): GrpcConnectionConfig {
  const connection = connections.find((c) => c.name === name);
  if (connection === undefined) {
    throw new SluiceError('ERR_CONNECTION_UNKNOWN', { message: `No connection is named "${name}" (named by ${CONNECTION_METADATA} or the call's authority)`, details: { connection: name } });
  }
  if (connection.type !== 'grpc') {
    throw new SluiceError('ERR_BAD_REQUEST', {
      message: `Connection "${name}" is a ${connection.type} connection; the gRPC listener carries grpc connections only (use /v1/proxy/${name} or \`sluice connect ${name}\`)`,
      details: { connection: name },
    });
  }
  return connection;
}

/** Ends a call that never became an exchange (no caller, no connection) with its status, trailers-only. */
function refuseCall(stream: ServerHttp2Stream, err: unknown): void {
  if (stream.destroyed || stream.headersSent) return;
  const error = err instanceof SluiceError ? err : new SluiceError('ERR_INTERNAL', { cause: err });
  stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...refusalTrailers(error, newRequestId()) }, { endStream: true });
}

/** Creates the handler of the gRPC listener's calls. */
export function createGrpcDirectCalls(deps: GrpcDirectDeps): GrpcDirectCalls {
  const sessionFor = deps.sessionFor ?? (() => ({ id: `ses_${randomUUID().replaceAll('-', '')}`, recorder: discardSessionRecorder }));
  const start = async (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, clientAddress: string): Promise<void> => {
    // Who calls comes first: an unauthenticated caller learns nothing about which connections exist.
    const principal = await deps.authenticate(headers);
    const connection = grpcConnection(deps.connections(), connectionNameOf(headers));
    // The caller may have gone while its token was verified: no session is opened for nobody.
    if (stream.destroyed) return;
    const session = sessionFor(principal, connection, clientAddress, stream);
    runGrpcExchange(deps.exchange, stream, headers, { principal, connection, session, clientAddress, descriptors: deps.descriptors, via: 'proxy' });
  };
  return {
    handle(stream, headers, clientAddress) {
      stream.on('error', () => undefined);
      start(stream, headers, clientAddress).catch((err: unknown) => refuseCall(stream, err));
    },
  };
}
