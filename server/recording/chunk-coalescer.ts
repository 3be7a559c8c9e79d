import type { Direction } from './event-types.js';

/** One flushed run of chunks of one direction. */
export interface ChunkRun {
  readonly dir: Direction;
  /** Session time of the first chunk. */
  readonly t: number;
  /** `[ms after t, bytes]` per chunk, so a replay can play them at the original pace. */
  readonly parts: [number, number][];
  readonly bytes: number;
  /** The chunks' bytes, when they are kept. */
  readonly payload?: Buffer;
}

/** Options of a coalescer. */
export interface ChunkCoalescerOptions {
  /** Whether chunk bytes are kept, per direction. */
  readonly keep: Readonly<Record<Direction, boolean>>;
  /** Session time now. */
  readonly now: () => number;
  /** Receives each run; called synchronously from `push` or the timer. */
  readonly flush: (run: ChunkRun) => void;
  /** A run is flushed once it holds this many bytes; default 16 KiB. */
  readonly maxBytes?: number;
  /** ... or once its first chunk is this old; default 20 ms. */
  readonly maxDelayMs?: number;
}

/**
 * Gathers a stream's small chunks (SSE events of a few hundred bytes) into one record per run, so the
 * per-record overhead (length, nonce, tag, chain hash, metadata) is paid per run rather than per event,
 * while each chunk keeps its own time offset. A run ends at a size, an age, a change of direction, or
 * an explicit `drain()` before any other record of the exchange.
 */
export class ChunkCoalescer {
  readonly #o: ChunkCoalescerOptions;
  #dir: Direction | null = null;
  #t = 0;
  #parts: [number, number][] = [];
  #chunks: Buffer[] = [];
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: ChunkCoalescerOptions) {
    this.#o = options;
  }

  push(dir: Direction, chunk: Buffer): void {
    if (this.#dir !== null && this.#dir !== dir) this.drain();
    const now = this.#o.now();
    if (this.#dir === null) {
      this.#dir = dir;
      this.#t = now;
      this.#timer = setTimeout(() => this.drain(), this.#o.maxDelayMs ?? 20);
      this.#timer.unref();
    }
    this.#parts.push([now - this.#t, chunk.length]);
    if (this.#o.keep[dir]) this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    if (this.#bytes >= (this.#o.maxBytes ?? 16 * 1024)) this.drain();
  }

  /** Flushes the current run, if any. */
  drain(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const dir = this.#dir;
    if (dir === null) return;
    const run: ChunkRun = {
      dir,
      t: this.#t,
      parts: this.#parts,
      bytes: this.#bytes,
      ...(this.#o.keep[dir] ? { payload: this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks) } : {}),
    };
    this.#dir = null;
    this.#parts = [];
    this.#chunks = [];
    this.#bytes = 0;
    this.#o.flush(run);
  }
}
