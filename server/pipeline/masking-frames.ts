import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import type { ResponseMasking } from './masking-stage.js';
import type { ResponseFrames, ResponseHead } from './response-frames.js';

function ignore(): void {}

/**
 * The masking stage as a decorator of response frames: head and trailer values masked, and the body, when
 * its plan needs one, through a Transform whose output goes on with the same backpressure. A body that
 * passes unchanged costs no stream.
 */
export class MaskingFrames implements ResponseFrames {
  readonly #masking: ResponseMasking;
  readonly #next: ResponseFrames;
  readonly #fail: (error: unknown) => void;
  #transform: Transform | null = null;
  #resume: () => void = ignore;
  /** The upstream's trailers, sent on once the Transform has flushed the body. */
  #trailers: IncomingHttpHeaders | undefined;

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
    return this.#transform === null ? this.#next.data(chunk) : this.#transform.write(chunk);
  }

  end(trailers?: IncomingHttpHeaders, last?: Buffer): void {
    // Trailers are headers sent late: their values are masked like the head's.
    const masked = trailers === undefined ? undefined : this.#masking.headers(trailers);
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
      if (this.#transform === null) resume();
      else this.#transform.resume();
    });
  }

  /** Stops masking mid-body: the exchange failed or its caller left. */
  stop(): void {
    this.#transform?.destroy();
  }
}
