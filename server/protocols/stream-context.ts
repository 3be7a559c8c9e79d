import type { Duplex } from 'node:stream';
import type { ConnectionConfig } from '../config/schema.js';
import type { Principal } from '../identity/principal.js';
import type { SessionRef } from '../pipeline/exchange.js';

/** What the tunnel knows about one stream when it hands it to a protocol. */
export interface StreamContext<C extends ConnectionConfig = ConnectionConfig> {
  /** Authenticated by the tunnel. */
  readonly principal: Principal;
  readonly connection: C;
  readonly session: SessionRef;
  /** The address of the tunnel's client (the CLI's machine as the gateway sees it). */
  readonly clientAddress: string;
  /** Told of each request parsed from the stream and how it ended (status 0: no answer), for the CLI's live counts. */
  readonly onExchange?: (phase: 'start' | 'end', status?: number) => void;
}

/** A connection type's protocol on tunnel streams: each stream it is handed becomes exchanges through the pipeline. */
export interface StreamProtocol<C extends ConnectionConfig = ConnectionConfig> {
  handle(stream: Duplex, context: StreamContext<C>): void;
  /** Destroys every stream it was handed; the exchange handler is closed by its owner. */
  close(): Promise<void>;
}
