import type { Key } from 'ink';
import type { Playback } from './playback.js';

/** Applies the playback keys shared by the playback views: space, +/-, →; true when the key was one. */
export function handlePlaybackKey(playback: Playback, input: string, key: Key): boolean {
  if (input === ' ') playback.toggle();
  else if (input === '+' || input === '=') playback.faster();
  else if (input === '-' || input === '_') playback.slower();
  else if (key.rightArrow) playback.skipToEnd();
  else return false;
  return true;
}

/** "▶ playing", "❚❚ paused", "■ ended" for the header line. */
export function stateLabel(playback: Playback): string {
  switch (playback.state) {
    case 'playing':
      return '▶ playing';
    case 'paused':
    case 'idle':
      return '❚❚ paused';
    case 'ended':
      return '■ ended';
  }
}

/** Key hints of the playback views. */
export const PLAYBACK_KEYS = 'space pause/play · +/- speed · → skip to end · Esc back';
