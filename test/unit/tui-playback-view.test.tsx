import { render } from 'ink-testing-library';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup } from 'ink-testing-library';
import { PlaybackView } from '../../cli/tui/playback-view.js';
import { TcpTimelineView } from '../../cli/tui/tcp-timeline-view.js';
import { fixtureSession, KEY, press, settle } from './tui-fixtures.js';
import { ManualClock } from './tui-manual-clock.js';

afterEach(() => cleanup());

const streamed = fixtureSession('http-streamed').exchanges[0]!;
const chunks = streamed.chunks;
const firstT = chunks[0]!.t;
const textUpTo = (n: number): string =>
  chunks
    .slice(0, n)
    .map((c) => c.text)
    .join('');

/** The answer area of a frame: the lines between the time bar block and the key help, joined. */
function answer(frame: string | undefined): string {
  const lines = (frame ?? '').split('\n');
  const start = lines.findIndex((l) => l.trim() === '') + 1;
  return lines
    .slice(start, -1)
    .map((l) => l.trimEnd())
    .join('\n');
}

describe('PlaybackView on the streamed fixture (injected clock)', () => {
  it('shows the answer up to the chunks due, at their recorded offsets', async () => {
    const clock = new ManualClock();
    const { lastFrame } = render(<PlaybackView exchange={streamed} clock={clock} onBack={() => {}} />);
    await settle();
    expect(lastFrame()).toContain('▶ playing · 1× · chunk 0/27');
    expect(answer(lastFrame())).toBe('');

    clock.advance(firstT - 1);
    await settle();
    expect(lastFrame()).toContain('chunk 0/27');

    clock.advance(1);
    await settle();
    expect(answer(lastFrame())).toBe(textUpTo(1).trimEnd());

    // Every later chunk appears exactly at its offset, not a millisecond before.
    for (let i = 1; i < 6; i++) {
      const c = chunks[i]!;
      clock.advance(c.t - clock.now() - 1);
      await settle();
      expect(lastFrame()).toContain(`chunk ${i}/27`);
      clock.advance(1);
      await settle();
      expect(lastFrame()).toContain(`chunk ${i + 1}/27`);
      expect(answer(lastFrame())).toBe(textUpTo(i + 1).trimEnd());
    }
  });

  it('at 2× the waits are halved', async () => {
    const clock = new ManualClock();
    const { lastFrame } = render(<PlaybackView exchange={streamed} clock={clock} speed={2} onBack={() => {}} />);
    await settle();
    expect(lastFrame()).toContain('2×');
    const fifth = chunks[4]!.t;
    clock.advance(Math.ceil(fifth / 2) - 1);
    await settle();
    expect(lastFrame()).toContain('chunk 4/27');
    clock.advance(1);
    await settle();
    expect(lastFrame()).toContain('chunk 5/27');
    expect(answer(lastFrame())).toBe(textUpTo(5).trimEnd());
  });

  it('space pauses and resumes; + changes the speed mid-play; → skips to the end', async () => {
    const clock = new ManualClock();
    const { lastFrame, stdin } = render(<PlaybackView exchange={streamed} clock={clock} onBack={() => {}} />);
    await settle();
    clock.advance(chunks[2]!.t);
    await settle();
    expect(lastFrame()).toContain('chunk 3/27');

    await press(stdin, ' ');
    expect(lastFrame()).toContain('❚❚ paused');
    clock.advance(60_000);
    await settle();
    expect(lastFrame()).toContain('chunk 3/27');

    await press(stdin, ' ');
    expect(lastFrame()).toContain('▶ playing');
    await press(stdin, '+');
    expect(lastFrame()).toContain('▶ playing · 2×');
    // From here the gap to chunk 4 passes at double speed.
    clock.advance(Math.ceil((chunks[3]!.t - chunks[2]!.t) / 2));
    await settle();
    expect(lastFrame()).toContain('chunk 4/27');

    await press(stdin, KEY.right);
    expect(lastFrame()).toContain('■ ended');
    expect(lastFrame()).toContain('chunk 27/27');
    expect(answer(lastFrame()).replace(/\n/g, ' ')).toContain('overlaps the index rebuild.');
  });

  it('the time bar marks the review hold and the slow first token', async () => {
    const clock = new ManualClock();
    const { lastFrame } = render(<PlaybackView exchange={streamed} clock={clock} barWidth={55} autoPlay={false} onBack={() => {}} />);
    await settle();
    const lines = (lastFrame() ?? '').split('\n');
    const marks = lines.find((l) => l.includes('▒'));
    expect(marks).toBeDefined();
    // 5.5 s over 55 cells: the review (0–3.0 s) takes cells 0–29, the first token (3.0–4.2 s) cells 30–41.
    expect(marks!.trimEnd()).toBe(`${'▒'.repeat(30)}${'░'.repeat(12)}`);
    expect(lastFrame()).toContain('▒ review hold 3.0s at 2ms');
    expect(lastFrame()).toContain('░ slow first token 1.2s at 3.0s');
  });

  it('Esc calls onBack', async () => {
    let back = 0;
    const { stdin } = render(<PlaybackView exchange={streamed} clock={new ManualClock()} onBack={() => back++} />);
    await settle();
    await press(stdin, KEY.escape);
    expect(back).toBe(1);
  });
});

describe('TcpTimelineView on the tcp fixture', () => {
  const timeline = fixtureSession('tcp-redis').timeline;

  it('reveals reads and writes at their recorded times', async () => {
    const clock = new ManualClock();
    const { lastFrame } = render(<TcpTimelineView timeline={timeline} clock={clock} onBack={() => {}} />);
    await settle();
    clock.advance(12);
    await settle();
    expect(lastFrame()).toContain('→ in      14 B  *1↵$4↵PING↵');
    expect(lastFrame()).toContain('← out      7 B  +PONG↵');
    expect(lastFrame()).not.toContain('SET');

    // The 2 s idle before GET is played out in full at 1×.
    clock.advance(2259 - 12);
    await settle();
    expect(lastFrame()).toContain('SET');
    expect(lastFrame()).not.toContain('GET');
    clock.advance(1);
    await settle();
    expect(lastFrame()).toContain('GET');
    expect(lastFrame()).toContain('5/9 · → 70 B in · ← 12 B out');
  });

  it('→ shows the whole timeline, binary bytes as "·"', async () => {
    const { lastFrame, stdin } = render(<TcpTimelineView timeline={timeline} clock={new ManualClock()} onBack={() => {}} />);
    await settle();
    await press(stdin, KEY.right);
    expect(lastFrame()).toContain('9/9');
    expect(lastFrame()).toContain('···DUMP blob');
    expect(lastFrame()).toContain('QUIT');
  });
});
