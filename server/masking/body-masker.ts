/**
 * A synchronous masker of one response body: bytes in, masked text (or the original bytes) out.
 * The Node Transform wraps one; a benchmark or `sluice mask test` can drive one directly.
 */
export interface BodyMasker {
  /** What may be sent after `chunk` (possibly nothing: a held-back tail or a JSON body being collected). */
  write(chunk: Buffer): string | Buffer;
  /** The rest, at the end of the body. */
  end(): string | Buffer;
}
