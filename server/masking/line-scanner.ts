import { SluiceError } from '../../shared/errors.js';

/** Options of a LineScanner. */
export interface LineScannerOptions {
  /** Longest line (without its terminator); a longer one is refused as soon as it is seen to be longer. */
  readonly maxLine: number;
  /**
   * `any`: "\n", "\r\n" or a lone "\r" ends a line (server-sent events). `lf`: only "\n" does, a "\r"
   * before it being part of the terminator (NDJSON, JSON Lines).
   */
  readonly terminators: 'any' | 'lf';
}

/** Receives each complete line, without its terminator, and the terminator ("" for an unterminated last line). */
export type LineSink = (line: string, eol: string) => void;

/**
 * Cuts a text stream into lines, however it arrives. Each chunk is searched once from where the last
 * search stopped and the unfinished line is kept as pieces, so the cost is linear in the input: a line
 * of megabytes fed a few bytes at a time is never searched or copied again per chunk.
 */
export class LineScanner {
  readonly #maxLine: number;
  readonly #anyEnd: boolean;
  #pieces: string[] = [];
  #length = 0;
  /** Whether a "\r" has been seen: until then only "\n" is searched for, by the faster search. */
  #sawCr = false;
  /** The last chunk ended with a "\r" that ends a line: a "\n" starting the next one belongs to it. */
  #pendingCr = false;

  constructor(options: LineScannerOptions) {
    this.#maxLine = options.maxLine;
    this.#anyEnd = options.terminators === 'any';
  }

  /** Whether no line is in progress: the next text starts a new line. */
  get idle(): boolean {
    return this.#pieces.length === 0 && !this.#pendingCr;
  }

  push(text: string, onLine: LineSink): void {
    if (text === '') return;
    let pos = 0;
    if (this.#pendingCr) {
      this.#pendingCr = false;
      if (text.charCodeAt(0) === 0x0a) {
        this.#emit('', '\r\n', onLine);
        pos = 1;
      } else {
        this.#emit('', '\r', onLine);
      }
    }
    if (this.#anyEnd && !this.#sawCr && text.indexOf('\r', pos) !== -1) this.#sawCr = true;
    let lf = text.indexOf('\n', pos);
    let cr = this.#anyEnd && this.#sawCr ? text.indexOf('\r', pos) : -1;
    while (pos < text.length) {
      if (lf !== -1 && lf < pos) lf = text.indexOf('\n', pos);
      if (cr !== -1 && cr < pos) cr = text.indexOf('\r', pos);
      let at: number;
      let length: number;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        if (cr + 1 === text.length) {
          // Maybe the first half of "\r\n": the line is complete, its terminator not yet.
          this.#add(text.slice(pos, cr));
          this.#pendingCr = true;
          return;
        }
        at = cr;
        length = text.charCodeAt(cr + 1) === 0x0a ? 2 : 1;
      } else if (lf !== -1) {
        at = lf;
        length = 1;
        if (!this.#anyEnd && at > pos && text.charCodeAt(at - 1) === 0x0d) {
          at -= 1;
          length = 2;
        } else if (!this.#anyEnd && at === pos && this.#endsWithCr()) {
          // "\r" and "\n" arrived in different chunks.
          this.#dropTrailingCr();
          this.#emit(text.slice(pos, at), '\r\n', onLine);
          pos = at + 1;
          continue;
        }
      } else {
        this.#add(text.slice(pos));
        return;
      }
      this.#emit(text.slice(pos, at), text.slice(at, at + length), onLine);
      pos = at + length;
    }
  }

  /** The unfinished last line, if any. */
  end(onLine: LineSink): void {
    if (this.#pendingCr) {
      this.#pendingCr = false;
      this.#emit('', '\r', onLine);
      return;
    }
    if (this.#length === 0 && this.#pieces.length === 0) return;
    this.#emit('', '', onLine);
  }

  #add(piece: string): void {
    if (piece === '') return;
    this.#length += piece.length;
    if (this.#length > this.#maxLine) this.#tooLong();
    this.#pieces.push(piece);
  }

  #emit(last: string, eol: string, onLine: LineSink): void {
    if (this.#length + last.length > this.#maxLine) this.#tooLong();
    let line = last;
    if (this.#pieces.length > 0) {
      this.#pieces.push(last);
      line = this.#pieces.join('');
      this.#pieces = [];
      this.#length = 0;
    }
    onLine(line, eol);
  }

  #endsWithCr(): boolean {
    const lastPiece = this.#pieces[this.#pieces.length - 1];
    return lastPiece !== undefined && lastPiece.charCodeAt(lastPiece.length - 1) === 0x0d;
  }

  #dropTrailingCr(): void {
    const i = this.#pieces.length - 1;
    this.#pieces[i] = this.#pieces[i]!.slice(0, -1);
    this.#length -= 1;
  }

  #tooLong(): never {
    this.#pieces = [];
    this.#length = 0;
    throw new SluiceError('ERR_MASKING_BLOCKED', {
      message: `A line of the streamed response exceeds the masking limit of ${this.#maxLine} characters (masking.max_line)`,
    });
  }
}
