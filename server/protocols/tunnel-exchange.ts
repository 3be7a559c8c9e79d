import type { IncomingHttpHeaders } from 'node:http';
import { startExchange, type Exchange } from '../pipeline/exchange.js';
import type { RecordingFacts } from '../pipeline/recorder.js';
import type { StreamContext } from './stream-context.js';

/** What the tunnel established about the caller of every exchange on one of its streams. */
export type TunnelCaller = Pick<StreamContext, 'principal' | 'connection' | 'session' | 'clientAddress'>;

/** The request a protocol parsed from a tunnel stream. */
export interface TunnelRequest {
  readonly method: string;
  /** Path and query as sent upstream, or host:port for TCP. */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
}

/** Begins an exchange that came through a tunnel, as the tunnel's caller, recorded as `facts` say. */
export function startTunnelExchange(caller: TunnelCaller, request: TunnelRequest, facts: RecordingFacts): Exchange {
  // Picked field by field: a protocol's context carries more (descriptors, callbacks) that is no part of the exchange.
  return startExchange(
    {
      principal: caller.principal,
      connection: caller.connection,
      session: caller.session,
      clientAddress: caller.clientAddress,
      via: 'tunnel',
      method: request.method,
      path: request.path,
      headers: request.headers,
    },
    facts,
  );
}
