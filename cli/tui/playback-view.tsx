import { Box, Text } from 'ink';
import { formatSpeed } from './display-format.js';
import { KeyHelp } from './key-help.js';
import type { ExchangeDetail } from './model.js';
import { handlePlaybackKey, PLAYBACK_KEYS, stateLabel } from './playback-controls.js';
import type { Clock } from './playback.js';
import { TimeBar } from './time-bar.js';
import { usePlayback } from './use-playback.js';
import { useKeys } from './use-keys.js';

/** Props of `PlaybackView`. */
export interface PlaybackViewProps {
  readonly exchange: ExchangeDetail;
  /** Esc. */
  readonly onBack: () => void;
  /** Injected for tests; the system clock otherwise. */
  readonly clock?: Clock;
  /** Initial speed (0.25 … 16), 1 by default. */
  readonly speed?: number;
  /** Start playing on mount (default true). */
  readonly autoPlay?: boolean;
  /** Cells of the time bar. */
  readonly barWidth?: number;
  /** Lines of answer shown; the latest lines stay in view. */
  readonly height?: number;
  /** Waits shorter than this are not marked on the time bar. */
  readonly longWaitMs?: number;
}

/** Plays a recorded answer at its original pace, scaled by speed; the time bar marks the long waits. */
export function PlaybackView({ exchange, onBack, clock, speed, autoPlay, barWidth = 60, height = 15, longWaitMs }: PlaybackViewProps) {
  const playback = usePlayback(exchange.chunks, {
    ...(clock === undefined ? {} : { clock }),
    ...(speed === undefined ? {} : { speed }),
    ...(autoPlay === undefined ? {} : { autoPlay }),
    ...(exchange.latencyMs === undefined ? {} : { duration: exchange.latencyMs }),
  });

  useKeys((input, key) => {
    if (key.escape) onBack();
    else handlePlaybackKey(playback, input, key);
  });

  const text = playback.text();
  const lines = text.split('\n').slice(-height);
  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>{`Playback #${exchange.index + 1} ${exchange.grpc === undefined ? `${exchange.method} ${exchange.path}` : `grpc ${exchange.grpc.service}/${exchange.grpc.method}`}`}</Text>
        {exchange.model === undefined ? '' : ` · ${exchange.model}`}
      </Text>
      <Text>{`${stateLabel(playback)} · ${formatSpeed(playback.speed)} · chunk ${playback.emitted}/${exchange.chunks.length}`}</Text>
      <TimeBar
        position={playback.position}
        duration={playback.duration}
        waits={exchange.waits}
        width={barWidth}
        {...(longWaitMs === undefined ? {} : { longWaitMs })}
      />
      <Box flexDirection="column" marginTop={1}>
        {exchange.chunks.length === 0 ? (
          <Text dimColor>no answer text was recorded</Text>
        ) : (
          lines.map((l, i) => <Text key={i}>{l === '' ? ' ' : l}</Text>)
        )}
      </Box>
      <KeyHelp keys={PLAYBACK_KEYS} />
    </Box>
  );
}
