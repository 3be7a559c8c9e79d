import type { Duplex } from 'node:stream';
import type { SluiceError } from '../../shared/errors.js';
import { BoundedBody, type ChunkGate } from '../pipeline/bounded-body.js';
import type { Carrier } from '../pipeline/carrier.js';
import type { RecordingFacts } from '../pipeline/recorder.js';
import { resetStream, streamFailure } from '../pipeline/tcp-upstream.js';

/** How the recorder keeps TCP exchanges: opaque bytes, `tcp.chunk` records. */
export const TCP_RECORDING: RecordingFacts = Object.freeze({ body: 'stream', chunkRecord: 'tcp.chunk' });

/**
 * One tunnel stream of a TCP connection as the pipeline's carrier. It has no request head or body to show
 * policy, no response head, and no answer to give: a refusal or failure resets the stream.
 */
export class TcpCarrier implements Carrier {
  readonly secure = false;
  readonly #stream: Duplex;
  readonly #connection: string;
  #bytesOut = 0;

  constructor(stream: Duplex, connectionName: string) {
    this.#stream = stream;
    this.#connection = connectionName;
  }

  get gone(): boolean {
    return this.#stream.destroyed;
  }

  get headSent(): boolean {
    return this.#bytesOut > 0;
  }

  takeBody(): undefined {
    return undefined;
  }

  takeArrivedBody(): { readonly unread: boolean } {
    return { unread: false };
  }

  requestBody(gate: ChunkGate | undefined): Duplex | BoundedBody {
    // Without a recording gate the stream itself goes upstream: no stream of the gateway's own in between.
    return gate === undefined ? this.#stream : new BoundedBody(this.#stream, Infinity, gate);
  }

  onGone(listener: (error?: Error) => void): () => void {
    let failure: Error | undefined;
    const onError = (err: Error): void => {
      failure = streamFailure(this.#connection, err);
    };
    const onClose = (): void => listener(failure);
    this.#stream.on('error', onError);
    this.#stream.once('close', onClose);
    return () => {
      this.#stream.off('error', onError);
      this.#stream.off('close', onClose);
    };
  }

  answer(): void {
    // Never asked: a TCP connection cannot be held for review, so nothing answers in place of its upstream.
    resetStream(this.#stream, new Error('A TCP stream has no answer to give'));
  }

  refusal(): null {
    return null;
  }

  refuse(error: SluiceError): void {
    resetStream(this.#stream, error);
  }

  head(): void {}

  data(chunk: Buffer): boolean {
    this.#bytesOut += chunk.length;
    return this.#stream.write(chunk);
  }

  end(_trailers?: unknown, last?: Buffer): void {
    if (last === undefined) this.#stream.end();
    else this.#stream.end(last);
  }

  resumeWith(resume: () => void): void {
    this.#stream.on('drain', resume);
  }
}
