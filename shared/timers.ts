/** Longest delay a Node timer takes (about 24.8 days); a later moment is reached in steps. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A pending call at a moment in time. */
export interface TimedCall {
  cancel(): void;
}

/**
 * Calls `fn` once `epochMs` (milliseconds since the epoch) has passed, at once if it already has. The
 * timer does not keep the process alive; `cancel` stops it.
 */
export function atTime(epochMs: number, fn: () => void): TimedCall {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const wait = epochMs - Date.now();
    if (wait <= 0) {
      timer = undefined;
      fn();
      return;
    }
    timer = setTimeout(arm, Math.min(wait, MAX_TIMER_MS));
    timer.unref();
  };
  arm();
  return { cancel: () => clearTimeout(timer) };
}
