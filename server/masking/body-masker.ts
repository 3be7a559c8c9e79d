/**
 * A masker of one response body: bytes in, masked text (or the original bytes) out.
 * The Node Transform wraps one; a benchmark or `sluice mask test` can drive one directly.
 */
export interface BodyMasker {
  /** What may be sent after `chunk` (possibly nothing: a held-back tail or a JSON body being collected). */
  write(chunk: Buffer): string | Buffer;
  /** The rest, at the end of the body. */
  end(): string | Buffer;
  /**
   * `write` with the same result, but long work (a large chunk) is cut into slices with a turn of the
   * event loop between them, so one body never holds the loop for more than a few milliseconds. A
   * Transform calls these when present, and never mixes them with the synchronous forms.
   */
  writeAsync?(chunk: Buffer): Promise<string | Buffer>;
  /** `end`, sliced as `writeAsync` is (a whole JSON body is masked here). */
  endAsync?(): Promise<string | Buffer>;
}

/** A masker's output as bytes: text is UTF-8 encoded, bytes pass as they are. */
export function outputBytes(part: string | Buffer): Buffer {
  return typeof part === 'string' ? Buffer.from(part, 'utf8') : part;
}
