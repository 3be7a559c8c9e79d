import { useEffect, useReducer, useState } from 'react';
import { Playback, type Clock, type TimedChunk } from './playback.js';

/** Options of `usePlayback`. */
export interface UsePlaybackOptions {
  readonly clock?: Clock;
  readonly speed?: number;
  readonly duration?: number;
  /** Start playing on mount (default true). */
  readonly autoPlay?: boolean;
  /** Wall-clock ms between redraws while playing, so the time bar moves through long waits. */
  readonly tickMs?: number;
}

/** A `Playback` owned by a component: redraws on every change, stops its timers on unmount. */
export function usePlayback(chunks: readonly TimedChunk[], options: UsePlaybackOptions = {}): Playback {
  const [, redraw] = useReducer((n: number) => n + 1, 0);
  const [playback] = useState(
    () =>
      new Playback({
        chunks,
        ...(options.clock === undefined ? {} : { clock: options.clock }),
        ...(options.speed === undefined ? {} : { speed: options.speed }),
        ...(options.duration === undefined ? {} : { duration: options.duration }),
        tickMs: options.tickMs ?? 100,
        onChunk: redraw,
        onProgress: redraw,
      }),
  );
  useEffect(() => {
    if (options.autoPlay ?? true) playback.play();
    return () => playback.dispose();
    // The engine is created once per mount; the view is remounted for another exchange.
  }, [playback]);
  return playback;
}
