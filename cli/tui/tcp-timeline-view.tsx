import { Box, Text } from 'ink';
import { formatMs, formatSpeed } from './display-format.js';
import { KeyHelp } from './key-help.js';
import type { TcpTimelineEntry } from './model.js';
import { handlePlaybackKey, PLAYBACK_KEYS, stateLabel } from './playback-controls.js';
import type { Clock } from './playback.js';
import { TimeBar } from './time-bar.js';
import { usePlayback } from './use-playback.js';
import { useKeys } from './use-keys.js';

/** Props of `TcpTimelineView`. */
export interface TcpTimelineViewProps {
  readonly timeline: readonly TcpTimelineEntry[];
  /** Esc. */
  readonly onBack: () => void;
  readonly clock?: Clock;
  readonly speed?: number;
  /** Start playing on mount (default true); when false, → shows the whole timeline at once. */
  readonly autoPlay?: boolean;
  readonly barWidth?: number;
  /** Rows shown; the latest stay in view. */
  readonly height?: number;
}

/** A tcp session as an input/output timeline, each read or write appearing at its recorded time. */
export function TcpTimelineView({ timeline, onBack, clock, speed, autoPlay, barWidth = 60, height = 15 }: TcpTimelineViewProps) {
  // The engine reveals rows; their text is drawn from the timeline itself.
  const playback = usePlayback(
    timeline.map((e) => ({ t: e.t, text: '' })),
    {
      ...(clock === undefined ? {} : { clock }),
      ...(speed === undefined ? {} : { speed }),
      ...(autoPlay === undefined ? {} : { autoPlay }),
    },
  );

  useKeys((input, key) => {
    if (key.escape) onBack();
    else handlePlaybackKey(playback, input, key);
  });

  const shown = timeline.slice(0, playback.emitted).slice(-height);
  const totals = { in: 0, out: 0 };
  for (const e of timeline.slice(0, playback.emitted)) totals[e.direction] += e.bytes;
  return (
    <Box flexDirection="column">
      <Text bold>TCP timeline</Text>
      <Text>{`${stateLabel(playback)} · ${formatSpeed(playback.speed)} · ${playback.emitted}/${timeline.length} · → ${totals.in} B in · ← ${totals.out} B out`}</Text>
      <TimeBar position={playback.position} duration={playback.duration} waits={[]} width={barWidth} />
      <Box flexDirection="column" marginTop={1}>
        {shown.map((e, i) => (
          <Text key={i} wrap="truncate-end">
            <Text dimColor>{formatMs(e.t).padStart(7)}</Text>
            <Text color={e.direction === 'in' ? 'cyan' : 'magenta'}>{e.direction === 'in' ? '  → in  ' : '  ← out '}</Text>
            {`${String(e.bytes).padStart(6)} B  ${e.preview}`}
          </Text>
        ))}
      </Box>
      <KeyHelp keys={PLAYBACK_KEYS} />
    </Box>
  );
}
