import { Box, Text } from 'ink';
import { formatMs } from './display-format.js';
import type { Wait } from './model.js';

/** Props of `TimeBar`. */
export interface TimeBarProps {
  /** Recorded ms reached. */
  readonly position: number;
  readonly duration: number;
  readonly waits: readonly Wait[];
  /** Cells of the bar. */
  readonly width: number;
  /** Waits shorter than this are not marked. */
  readonly longWaitMs?: number;
}

const WAIT_MARK = { review: '▒', first_token: '░' } as const;
const WAIT_NAME = { review: 'review hold', first_token: 'slow first token' } as const;

/** The cells a stretch of recorded time covers on a bar of `width` cells; at least one, so a wait is never lost. */
export function cellRange(from: number, to: number, duration: number, width: number): [number, number] {
  if (duration <= 0) return [0, 0];
  // Rounding both ends (rather than floor/ceil) lets back-to-back waits meet without overlapping.
  const start = Math.min(width - 1, Math.round((from / duration) * width));
  const end = Math.max(start + 1, Math.min(width, Math.round((to / duration) * width)));
  return [start, end];
}

/** Progress through a recording, with the long waits (review holds, slow first tokens) marked under it. */
export function TimeBar({ position, duration, waits, width, longWaitMs = 500 }: TimeBarProps) {
  const played = duration <= 0 ? width : Math.round((Math.min(position, duration) / duration) * width);
  const long = waits.filter((w) => w.to - w.from >= longWaitMs);
  const marks = Array.from({ length: width }, () => ' ');
  for (const w of long) {
    const [start, end] = cellRange(w.from, w.to, duration, width);
    for (let i = start; i < end; i++) marks[i] = WAIT_MARK[w.kind];
  }
  return (
    <Box flexDirection="column">
      <Text>
        <Text color="green">{'█'.repeat(played)}</Text>
        <Text dimColor>{'─'.repeat(width - played)}</Text>
        {`  ${formatMs(position)} / ${formatMs(duration)}`}
      </Text>
      {long.length > 0 && (
        <>
          <Text color="yellow">{marks.join('').trimEnd()}</Text>
          <Text dimColor>
            {long.map((w) => `${WAIT_MARK[w.kind]} ${WAIT_NAME[w.kind]} ${formatMs(w.to - w.from)} at ${formatMs(w.from)}`).join('   ')}
          </Text>
        </>
      )}
    </Box>
  );
}
