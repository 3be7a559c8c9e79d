import type { BodyLength } from './http-head.js';

const CR = 0x0d;
const LF = 0x0a;

/** Bounds of the chunked framing lines, the only parts of a body that are read byte by byte. */
export interface BodyFramerLimits {
  /** Longest chunk-size line (size and extensions). */
  maxLineBytes: number;
  /** Most bytes of trailer fields after the last chunk. */
  maxTrailerBytes: number;
}

export const DEFAULT_BODY_FRAMER_LIMITS: BodyFramerLimits = { maxLineBytes: 4096, maxTrailerBytes: 32 * 1024 };

type ChunkState = 'size' | 'ext' | 'size-lf' | 'data' | 'data-cr' | 'data-lf' | 'trailer-start' | 'trailer' | 'trailer-lf' | 'end-lf';

/**
 * Follows one message body through a byte stream to find where it ends, without buffering or changing it:
 * the bytes are forwarded as they come (a streamed answer keeps its timing) and only the framing of chunked
 * bodies is read. Malformed chunked framing throws, since the next message could not be found after it.
 */
export class BodyFramer {
  private remaining = 0;
  private state: ChunkState = 'size';
  private digits = 0;
  private lineBytes = 0;
  private trailerBytes = 0;
  private finished: boolean;

  constructor(
    private readonly length: BodyLength,
    private readonly limits: BodyFramerLimits = DEFAULT_BODY_FRAMER_LIMITS,
  ) {
    this.finished = length.kind === 'none';
    if (length.kind === 'length') this.remaining = length.bytes;
  }

  /** True once the body's last byte was taken (never for a body delimited by the connection's close). */
  get done(): boolean {
    return this.finished;
  }

  /** How many bytes of `chunk` from `offset` belong to the body; stops at its last byte. */
  take(chunk: Buffer, offset: number): number {
    if (this.finished) return 0;
    switch (this.length.kind) {
      case 'until-close':
        return chunk.length - offset;
      case 'length': {
        const n = Math.min(this.remaining, chunk.length - offset);
        this.remaining -= n;
        this.finished = this.remaining === 0;
        return n;
      }
      default:
        return this.takeChunked(chunk, offset);
    }
  }

  private takeChunked(chunk: Buffer, offset: number): number {
    let i = offset;
    while (i < chunk.length && !this.finished) {
      if (this.state === 'data') {
        const n = Math.min(this.remaining, chunk.length - i);
        this.remaining -= n;
        i += n;
        if (this.remaining === 0) this.state = 'data-cr';
        continue;
      }
      this.step(chunk[i]!);
      i++;
    }
    return i - offset;
  }

  private step(byte: number): void {
    switch (this.state) {
      case 'size': {
        const digit = hexValue(byte);
        if (digit !== undefined) {
          // 13 hex digits stay exact in a double; a longer size is an attack, not an upload.
          if (++this.digits > 13) throw malformed('chunk size too large');
          this.remaining = this.remaining * 16 + digit;
          this.line();
        } else if (this.digits === 0) {
          throw malformed('chunk size expected');
        } else if (byte === CR) {
          this.state = 'size-lf';
        } else if (byte === 0x3b || byte === 0x20 || byte === 0x09) {
          this.state = 'ext';
          this.line();
        } else {
          throw malformed('invalid character in chunk size');
        }
        return;
      }
      case 'ext':
        if (byte === CR) this.state = 'size-lf';
        else if (byte === LF || byte === 0) throw malformed('bare LF in chunk extension');
        else this.line();
        return;
      case 'size-lf':
        if (byte !== LF) throw malformed('CRLF expected after chunk size');
        this.digits = 0;
        this.lineBytes = 0;
        this.state = this.remaining === 0 ? 'trailer-start' : 'data';
        return;
      case 'data-cr':
        if (byte !== CR) throw malformed('CRLF expected after chunk data');
        this.state = 'data-lf';
        return;
      case 'data-lf':
        if (byte !== LF) throw malformed('CRLF expected after chunk data');
        this.state = 'size';
        return;
      case 'trailer-start':
        if (byte === CR) {
          this.state = 'end-lf';
          return;
        }
        this.state = 'trailer';
        this.trailer(byte);
        return;
      case 'trailer':
        this.trailer(byte);
        return;
      case 'trailer-lf':
        if (byte !== LF) throw malformed('CRLF expected after a trailer field');
        this.state = 'trailer-start';
        return;
      case 'end-lf':
        if (byte !== LF) throw malformed('CRLF expected after the last chunk');
        this.finished = true;
        return;
      case 'data':
        return;
    }
  }

  private line(): void {
    if (++this.lineBytes > this.limits.maxLineBytes) throw malformed('chunk-size line too long');
  }

  private trailer(byte: number): void {
    if (++this.trailerBytes > this.limits.maxTrailerBytes) throw malformed('trailer fields too large');
    if (byte === CR) this.state = 'trailer-lf';
    else if (byte === LF) throw malformed('bare LF in a trailer field');
  }
}

function hexValue(byte: number): number | undefined {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x37;
  return undefined;
}

/** Chunked framing the local listener cannot follow. */
export class FramingError extends Error {
  constructor(message: string) {
    super(`malformed chunked body: ${message}`);
    this.name = 'FramingError';
  }
}

function malformed(message: string): FramingError {
  return new FramingError(message);
}
