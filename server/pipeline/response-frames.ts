import type { IncomingHttpHeaders } from 'node:http';

/** A response head as it travels from the upstream call to the caller. */
export interface ResponseHead {
  readonly status: number;
  /** The upstream's headers; once past masking, as the caller and the recording may see them. */
  readonly headers: IncomingHttpHeaders;
  /**
   * Set by masking when it rewrites the body that follows, which then goes out decoded and without a
   * length: `masked` by the connection's profiles, `scanned` for injected credentials only.
   */
  readonly rewrite?: 'masked' | 'scanned';
}

/**
 * One response as frames: the upstream call produces them, decorators (masking, recording) transform or
 * tap them on the way, and the carrier writes them to the caller. A method that throws fails the exchange.
 */
export interface ResponseFrames {
  /** The response head; never called for a protocol without one (TCP). */
  head(head: ResponseHead): void;
  /** A body chunk; false asks the producer to pause until the function given to `resumeWith` is called. */
  data(chunk: Buffer): boolean;
  /**
   * The response is complete. `trailers` are the upstream's; `last` is a final chunk held back by a
   * decorator (so a sized body completes only once its end is recorded) and written with the end.
   */
  end(trailers?: IncomingHttpHeaders, last?: Buffer): void;
  /** Called once, before any frame: how the consumer resumes its producer after `data` returned false. */
  resumeWith(resume: () => void): void;
}
