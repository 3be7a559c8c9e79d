import type { Readable } from 'node:stream';
import type { Exchange } from './exchange.js';
import type { ResponseFrames } from './response-frames.js';

/** What forwarding one exchange needs; built by the pipeline once the exchange may go upstream. */
export interface UpstreamCallOptions {
  readonly exchange: Exchange;
  /** The request body: whole (taken before it was recorded), streamed from the caller, or none. */
  readonly body: Buffer | Readable | null;
  /** Whether the caller reached the gateway over TLS. */
  readonly secure: boolean;
  /** Where the response goes, frame by frame. */
  readonly frames: ResponseFrames;
  /** The request direction is complete: every byte of it was forwarded. */
  readonly requestEnded: () => void;
  /** The exchange's one error path: any failure of the call, once. */
  readonly fail: (error: unknown) => void;
}

/** One call in flight. */
export interface UpstreamCall {
  /** Request body bytes forwarded so far. */
  readonly requestBytes: number;
  /** Stops the call (the exchange failed or its caller left); nothing more reaches the frames. */
  abort(reason: Error): void;
}

/** How a connection type reaches its upstream. */
export interface Upstream {
  /** Starts forwarding; failures, synchronous ones included, go to `options.fail`. */
  call(options: UpstreamCallOptions): UpstreamCall;
  /** Closes what it keeps open between calls (pools), aborting calls still in flight. */
  close(): Promise<void>;
}
