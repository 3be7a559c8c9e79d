/**
 * Plays timed chunks back at their recorded offsets, scaled by a speed. The clock is injected so
 * tests drive time, and the same engine serves the TUI's playback view and the plain `sluice replay`.
 */

/** A piece of recorded output, `t` ms after the start. */
export interface TimedChunk {
  readonly t: number;
  readonly text: string;
}

/** Time as the engine sees it; `systemClock` in production, a fake clock in tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. Globals are looked up per call so fake timers installed later still apply. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
};

/** Playback speeds, slowest to fastest; `+` and `-` step through them. */
export const SPEEDS = [0.25, 0.5, 1, 2, 4, 8, 16] as const;

/** Where the engine is. */
export type PlaybackState = 'idle' | 'playing' | 'paused' | 'ended';

/** Options of a `Playback`. */
export interface PlaybackOptions {
  readonly chunks: readonly TimedChunk[];
  readonly clock?: Clock;
  /** Initial speed, clamped to the `SPEEDS` range; 1 by default. */
  readonly speed?: number;
  /** Recorded length in ms when it runs past the last chunk (an exchange's latency); never shorter. */
  readonly duration?: number;
  /** Wall-clock ms between `onProgress` calls while playing; none when absent (plain replay). */
  readonly tickMs?: number;
  /** Called for every chunk as it becomes due, in order. */
  readonly onChunk?: (chunk: TimedChunk, index: number) => void;
  /** Called on every change of state, speed or position worth redrawing. */
  readonly onProgress?: () => void;
  /** Called once when the end is reached (played through or skipped to). */
  readonly onEnd?: () => void;
}

/** A playback engine: emits chunks at `t / speed`, with pause, resume, speed changes and skip-to-end. */
export class Playback {
  readonly #chunks: readonly TimedChunk[];
  readonly #clock: Clock;
  readonly #duration: number;
  readonly #tickMs: number | undefined;
  readonly #onChunk: ((chunk: TimedChunk, index: number) => void) | undefined;
  readonly #onProgress: (() => void) | undefined;
  readonly #onEnd: (() => void) | undefined;
  #speed: number;
  #state: PlaybackState = 'idle';
  /** Recorded position (ms) at the wall time `#anchorWall`; position moves at `#speed` from there while playing. */
  #anchorPos = 0;
  #anchorWall = 0;
  #emitted = 0;
  #timer: unknown;

  constructor(options: PlaybackOptions) {
    this.#chunks = [...options.chunks].sort((a, b) => a.t - b.t);
    this.#clock = options.clock ?? systemClock;
    this.#duration = Math.max(options.duration ?? 0, this.#chunks.at(-1)?.t ?? 0);
    this.#tickMs = options.tickMs;
    this.#speed = clampSpeed(options.speed ?? 1);
    this.#onChunk = options.onChunk;
    this.#onProgress = options.onProgress;
    this.#onEnd = options.onEnd;
  }

  /** Current state. */
  get state(): PlaybackState {
    return this.#state;
  }

  /** Current speed factor. */
  get speed(): number {
    return this.#speed;
  }

  /** Recorded length in ms. */
  get duration(): number {
    return this.#duration;
  }

  /** How many chunks have been emitted. */
  get emitted(): number {
    return this.#emitted;
  }

  /** Recorded time reached, in ms (0 … duration). */
  get position(): number {
    if (this.#state !== 'playing') return this.#anchorPos;
    return Math.min(this.#duration, this.#anchorPos + (this.#clock.now() - this.#anchorWall) * this.#speed);
  }

  /** The text emitted so far. */
  text(): string {
    return this.#chunks
      .slice(0, this.#emitted)
      .map((c) => c.text)
      .join('');
  }

  /** Starts from the beginning, or resumes when paused. */
  play(): void {
    if (this.#state === 'playing' || this.#state === 'ended') return;
    this.#anchorWall = this.#clock.now();
    this.#state = 'playing';
    this.#onProgress?.();
    this.#step();
  }

  /** Holds the position until `play()`. */
  pause(): void {
    if (this.#state !== 'playing') return;
    this.#anchorPos = this.position;
    this.#cancel();
    this.#state = 'paused';
    this.#onProgress?.();
  }

  /** Pauses when playing, plays otherwise. */
  toggle(): void {
    if (this.#state === 'playing') this.pause();
    else this.play();
  }

  /** Changes the speed from the current position on; what already played keeps its pace. */
  setSpeed(speed: number): void {
    const next = clampSpeed(speed);
    if (next === this.#speed) return;
    if (this.#state === 'playing') {
      this.#anchorPos = this.position;
      this.#anchorWall = this.#clock.now();
      this.#speed = next;
      this.#cancel();
      this.#step();
    } else {
      this.#speed = next;
    }
    this.#onProgress?.();
  }

  /** Steps to the next faster speed in `SPEEDS`. */
  faster(): void {
    this.setSpeed(SPEEDS.find((s) => s > this.#speed) ?? this.#speed);
  }

  /** Steps to the next slower speed in `SPEEDS`. */
  slower(): void {
    this.setSpeed([...SPEEDS].reverse().find((s) => s < this.#speed) ?? this.#speed);
  }

  /** Emits everything left at once and ends. */
  skipToEnd(): void {
    if (this.#state === 'ended') return;
    this.#cancel();
    this.#anchorPos = this.#duration;
    this.#emitDue(Number.POSITIVE_INFINITY);
    this.#finish();
  }

  /** Stops timers without ending; for unmounting a view mid-play. */
  dispose(): void {
    this.#cancel();
    if (this.#state === 'playing') this.#anchorPos = this.position;
    this.#state = 'paused';
  }

  /** Emits what is due, then sleeps until the next chunk (or tick, or the end). */
  #step(): void {
    const pos = this.position;
    this.#emitDue(pos);
    if (pos >= this.#duration && this.#emitted === this.#chunks.length) {
      this.#anchorPos = this.#duration;
      this.#finish();
      return;
    }
    const nextT = this.#chunks[this.#emitted]?.t ?? this.#duration;
    // Whole milliseconds, rounded up: a timer that fires early would find its chunk not yet due.
    let wait = Math.max(0, Math.ceil((nextT - pos) / this.#speed));
    if (this.#tickMs !== undefined) wait = Math.min(wait, this.#tickMs);
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#state !== 'playing') return;
      this.#onProgress?.();
      this.#step();
    }, wait);
  }

  #emitDue(pos: number): void {
    while (this.#emitted < this.#chunks.length) {
      const chunk = this.#chunks[this.#emitted];
      if (chunk === undefined || chunk.t > pos) break;
      this.#emitted++;
      this.#onChunk?.(chunk, this.#emitted - 1);
    }
  }

  #finish(): void {
    this.#state = 'ended';
    this.#onProgress?.();
    this.#onEnd?.();
  }

  #cancel(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Clamps a requested speed to the range of `SPEEDS`. */
export function clampSpeed(speed: number): number {
  if (!Number.isFinite(speed) || speed <= 0) return 1;
  return Math.min(SPEEDS[SPEEDS.length - 1] ?? 16, Math.max(SPEEDS[0] ?? 0.25, speed));
}

/** Writes chunks to a stream at their recorded pace (plain `sluice replay`); resolves at the end. */
export function replayToStream(
  chunks: readonly TimedChunk[],
  out: { write(text: string): unknown },
  options: { readonly clock?: Clock; readonly speed?: number; readonly duration?: number } = {},
): Promise<void> {
  return new Promise((resolve) => {
    const playback = new Playback({
      chunks,
      ...options,
      onChunk: (chunk) => out.write(chunk.text),
      onEnd: resolve,
    });
    playback.play();
  });
}
