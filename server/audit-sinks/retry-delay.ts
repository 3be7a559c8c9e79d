/**
 * The wait before retry `attempt` (1 for the first): doubling from `baseMs`, capped at `maxMs`, and
 * drawn from the upper half of that ("equal jitter"), so replicas and sinks that failed together do not
 * all come back in the same millisecond, yet none retries sooner than half the schedule.
 */
export function retryDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
