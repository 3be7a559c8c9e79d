import type { IncomingHttpHeaders } from 'node:http';
import type { Exchange } from './exchange.js';
import type { BodyTap, ExchangeEnding, MaskingCounts } from './recorder.js';
import type { ResponseFrames, ResponseHead } from './response-frames.js';

/** What recording the response frames of one exchange needs besides the frames. */
export interface RecordingFramesOptions {
  readonly exchange: Exchange;
  /** Where the frames go on to: the carrier. */
  readonly next: ResponseFrames;
  /** The recording's view of the bytes; null when it wants none. */
  readonly tap: BodyTap | null;
  /** The exchange's one error path. */
  readonly fail: (error: unknown) => void;
  /** Whether the exchange was settled otherwise (failed, or its caller left): its end is then recorded there. */
  readonly settled: () => boolean;
  /** What the frames do not see: the request bytes forwarded so far, and what masking replaced. */
  readonly facts: () => { readonly requestBytes: number; readonly masking?: MaskingCounts };
}

/**
 * The recorder as a decorator of response frames: the head is recorded as the caller gets it, the body is
 * tapped and counted, and the end is recorded before the caller gets it. A sized body's last chunk is held
 * back, since with a Content-Length the last byte is the end as far as the caller can tell.
 */
export class RecordingFrames implements ResponseFrames {
  /** The response status the caller was sent; 0 before a head (and for protocols without one). */
  status = 0;
  /** Bytes passed on to the caller. */
  responseBytes = 0;
  /** Set once the end is being recorded: a caller that leaves now does not make the exchange incomplete. */
  finishing = false;
  readonly #o: RecordingFramesOptions;
  /** The head's Content-Length when the caller gets it too; -1 otherwise. */
  #declared = -1;
  #held: Buffer | undefined;
  #requestDone = false;
  /** The response's end, once it came: with its trailers and last chunk, and whether the caller has it. */
  #end: { readonly trailers?: IncomingHttpHeaders; readonly last?: Buffer; passed: boolean } | undefined;

  constructor(options: RecordingFramesOptions) {
    this.#o = options;
  }

  head(head: ResponseHead): void {
    const { exchange, tap, next } = this.#o;
    this.status = head.status;
    exchange.recording.recordResponse({ status: head.status, headers: head.headers });
    // Masked, or searched for injected credentials (no profile applies): the body is as the caller gets it.
    if (head.rewrite !== undefined) tap?.downMasked?.();
    const length = head.headers['content-length'];
    if (head.rewrite === undefined && length !== undefined && exchange.method !== 'HEAD') this.#declared = Number(length);
    next.head(head);
  }

  data(chunk: Buffer): boolean {
    this.responseBytes += chunk.length;
    this.#o.tap?.down(chunk);
    if (this.responseBytes === this.#declared) {
      this.#held = chunk;
      return true;
    }
    return this.#o.next.data(chunk);
  }

  end(trailers?: IncomingHttpHeaders, last?: Buffer): void {
    const end = { trailers, last: last ?? this.#held, passed: false };
    this.#end = end;
    if (this.#requestDone) {
      this.#finish();
      return;
    }
    // A peer that half-closed first (TCP) gets its end at once: the other side may be waiting for it
    // before it ends its own. The exchange's end is recorded once that side has ended too.
    end.passed = true;
    this.#o.next.end(end.trailers, end.last);
  }

  resumeWith(resume: () => void): void {
    this.#o.next.resumeWith(resume);
  }

  /** The request direction is complete (for HTTP, once forwarded: its exchange ends with its response). */
  requestEnded(): void {
    this.#requestDone = true;
    if (this.#end !== undefined) this.#finish();
  }

  /** The facts of the exchange's end as they stand. */
  ending(complete: boolean, trailers?: IncomingHttpHeaders): ExchangeEnding {
    const { requestBytes, masking } = this.#o.facts();
    return {
      status: this.status,
      complete,
      requestBytes,
      responseBytes: this.responseBytes,
      durationMs: Date.now() - this.#o.exchange.startedAt,
      ...(masking === undefined || masking.length === 0 ? {} : { masking }),
      ...(trailers === undefined ? {} : { trailers }),
    };
  }

  #finish(): void {
    const end = this.#end!;
    if (this.finishing || this.#o.settled()) return;
    this.finishing = true;
    this.#o.exchange.recording.recordEnd(this.ending(true, end.trailers)).then(
      () => {
        if (!end.passed && !this.#o.settled()) this.#o.next.end(end.trailers, end.last);
      },
      (err: unknown) => this.#o.fail(err),
    );
  }
}
