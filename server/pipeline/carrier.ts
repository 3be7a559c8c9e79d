import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { SluiceError } from '../../shared/errors.js';
import type { ReadAheadBody } from '../policy/body-read-ahead.js';
import type { ChunkGate } from './bounded-body.js';
import type { ResponseFrames } from './response-frames.js';

/**
 * How one exchange reaches its caller in the caller's protocol (one per HTTP request, one per TCP stream):
 * the request body for policy and upstream, and the response back, written as frames. `runExchange`
 * drives it through every stage; a new connection type brings a new carrier, not a new pipeline.
 */
export interface Carrier extends ResponseFrames {
  /** Why the request target cannot be forwarded as sent (not in normal form): refused, on the record, at the path stage. */
  readonly targetRefusal?: SluiceError;
  /** Whether the caller reached the gateway over TLS (the upstream is told the scheme). */
  readonly secure: boolean;
  /** The caller went away: nothing more can reach it. */
  readonly gone: boolean;
  /** The caller has the response head (or, without heads, some of the response): a failure can only cut it off. */
  readonly headSent: boolean;
  /** Most request body bytes the connection takes; a declared longer body is refused unread. Absent: no limit. */
  readonly bodyLimit?: number;
  /** The caller holds its body until told to send it (Expect: 100-continue), so a refused request uploads nothing. */
  readonly bodyHeld?: boolean;
  /**
   * Reads up to `limit` bytes of the request body ahead for policy and puts them back, so the body still goes
   * upstream whole and as sent. Absent for a protocol with no request body to judge (TCP).
   */
  readAhead?(limit: number): Promise<ReadAheadBody>;
  /** The whole request body if it has arrived (read ahead), left in place; undefined while some is still on its way. */
  peekBody?(): Buffer | undefined;
  /** Takes the request body if it has arrived whole: recorded with the request and forwarded as one buffer. */
  takeBody(): Buffer | undefined;
  /**
   * The body of an exchange answered without forwarding (refused, or answered by the approval stage): taken
   * when it has arrived whole, never waited for; `unread` when one was declared and has not arrived (it is
   * then never read: the connection is closed after the answer).
   */
  takeArrivedBody(): { readonly body?: Buffer; readonly unread: boolean };
  /**
   * The exchange may go upstream: lets the caller send the rest of its request (100 Continue) and returns it
   * as the upstream reads it, each chunk forwarded once `gate` (the recording) passed it; null when there is none.
   */
  requestBody(gate: ChunkGate | undefined): Readable | null;
  /**
   * Calls `listener` once when the caller goes away, with the error when its side failed rather than closed;
   * returns what stops listening.
   */
  onGone(listener: (error?: Error) => void): () => void;
  /** Answers in place of the upstream (an approval stage that does not forward). */
  answer(status: number, headers: OutgoingHttpHeaders, body: Buffer): void;
  /**
   * What refusing now would tell the caller (status, bytes, and the trailers of a protocol that refuses in
   * them, as gRPC does even after a response head), or null when nothing can be answered any more.
   */
  refusal(error: SluiceError, requestId: string): { readonly status: number; readonly bytes: number; readonly trailers?: IncomingHttpHeaders } | null;
  /** Answers a refusal or failure in the protocol's way: an error answer while one can be sent, else an abort. */
  refuse(error: SluiceError, requestId: string): void;
}
