import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import type { BodyChunks, ResponseMasking } from './masking-stage.js';
import type { ResponseFrames, ResponseHead } from './response-frames.js';

function ignore(): void {}

/**
 * The masking stage as a decorator of response frames: head and trailer values masked, and the body, when
 * its plan needs one, masked on its way on with the same backpressure. Where the plan offers `chunks` (a
 * stream's body that needs no decoding), each chunk is masked within its own frame call: no stream, and
 * no turn of the event loop. Any other body goes through the plan's Transform. A body that passes
 * unchanged costs neither.
 */
export class MaskingFrames implements ResponseFrames {
  readonly #masking: ResponseMasking;
  readonly #next: ResponseFrames;
  readonly #fail: (error: unknown) => void;
  #transform: Transform | null = null;
  #chunks: BodyChunks | null = null;
  #resume: () => void = ignore;
  /** The upstream's trailers, sent on once the Transform has flushed the body. */
  #trailers: IncomingHttpHeaders | undefined;
  /** The caller's side asked to wait (its `data` returned false) and has not resumed yet. */
  #full = false;
  /** Stopped, or a chunk could not be masked: nothing more is masked or passed on. */
  #stopped = false;

  constructor(masking: ResponseMasking, next: ResponseFrames, fail: (error: unknown) => void) {
    this.#masking = masking;
    this.#next = next;
    this.#fail = fail;
  }

  head(head: ResponseHead): void {
    // Masked before anything records or forwards them: the recording holds what the caller may see.
    const headers = this.#masking.headers(head.headers);
    const body = this.#masking.body({ status: head.status, headers });
    if (body === null) {
      this.#next.head({ status: head.status, headers });
      return;
    }
    if (body.chunks !== undefined) {
      this.#chunks = body.chunks;
      this.#next.head({ status: head.status, headers, rewrite: body.rewrite });
      return;
    }
    const transform = body.transform;
    this.#transform = transform;
    transform.on('data', (chunk: Buffer) => {
      if (!this.#next.data(chunk)) transform.pause();
    });
    transform.on('drain', this.#resume);
    transform.on('end', () => this.#next.end(this.#trailers));
    transform.on('error', this.#fail);
    this.#next.head({ status: head.status, headers, rewrite: body.rewrite });
  }

  data(chunk: Buffer): boolean {
    if (this.#chunks !== null) return this.#passMasked(chunk) && !this.#full;
    return this.#transform === null ? this.#next.data(chunk) : this.#transform.write(chunk);
  }

  end(trailers?: IncomingHttpHeaders, last?: Buffer): void {
    // Trailers are headers sent late: their values are masked like the head's.
    const masked = trailers === undefined ? undefined : this.#masking.headers(trailers);
    if (this.#chunks !== null) {
      // The end goes on even to a full caller, as a Transform's does.
      if ((last === undefined || this.#passMasked(last)) && this.#passMasked(null)) this.#next.end(masked);
      return;
    }
    if (this.#transform === null) {
      this.#next.end(masked, last);
      return;
    }
    this.#trailers = masked;
    if (last === undefined) this.#transform.end();
    else this.#transform.end(last);
  }

  resumeWith(resume: () => void): void {
    this.#resume = resume;
    // The caller drained: with a Transform, it is what resumes (and its own drain resumes the upstream).
    this.#next.resumeWith(() => {
      this.#full = false;
      if (this.#transform === null) resume();
      else this.#transform.resume();
    });
  }

  /** Stops masking mid-body: the exchange failed or its caller left. */
  stop(): void {
    this.#stopped = true;
    this.#transform?.destroy();
  }

  /**
   * Masks a chunk (null: the body's end) and passes on what may be sent; false once stopped, or when the
   * chunk cannot be masked, which fails the exchange.
   */
  #passMasked(chunk: Buffer | null): boolean {
    if (this.#stopped) return false;
    let out: Buffer;
    try {
      out = chunk === null ? this.#chunks!.end() : this.#chunks!.write(chunk);
    } catch (error) {
      this.#stopped = true;
      this.#fail(error);
      return false;
    }
    // Nothing to send yet (a held-back tail, or the empty chunk undici hands over on resuming) leaves a
    // full caller full: the producer waits for the caller's resume either way.
    if (out.length > 0) this.#full = !this.#next.data(out);
    return true;
  }
}
