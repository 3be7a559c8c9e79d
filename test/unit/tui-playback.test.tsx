import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Playback, replayToStream, type TimedChunk } from '../../cli/tui/playback.js';
import { fixtureSession } from './tui-fixtures.js';

const CHUNKS: TimedChunk[] = [
  { t: 0, text: 'a' },
  { t: 100, text: 'b' },
  { t: 300, text: 'c' },
  { t: 1000, text: 'd' },
];

/** Times (fake ms since play) at which each chunk was emitted. */
function recorder() {
  const seen: [number, string][] = [];
  return { seen, onChunk: (c: TimedChunk) => seen.push([Date.now() - 1_000_000, c.text]) };
}

describe('Playback (fake timers, system clock)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: 1_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('emits each chunk at its recorded offset at 1×', () => {
    const r = recorder();
    const p = new Playback({ chunks: CHUNKS, onChunk: r.onChunk });
    p.play();
    expect(r.seen).toEqual([[0, 'a']]);
    vi.advanceTimersByTime(99);
    expect(p.text()).toBe('a');
    vi.advanceTimersByTime(1);
    expect(p.text()).toBe('ab');
    vi.advanceTimersByTime(1000);
    expect(r.seen).toEqual([
      [0, 'a'],
      [100, 'b'],
      [300, 'c'],
      [1000, 'd'],
    ]);
    expect(p.state).toBe('ended');
  });

  it('at 2× every offset is halved; at 0.25× quadrupled', () => {
    const fast = recorder();
    new Playback({ chunks: CHUNKS, speed: 2, onChunk: fast.onChunk }).play();
    vi.advanceTimersByTime(2000);
    expect(fast.seen.map(([t]) => t)).toEqual([0, 50, 150, 500]);

    vi.setSystemTime(1_000_000);
    const slow = recorder();
    new Playback({ chunks: CHUNKS, speed: 0.25, onChunk: slow.onChunk }).play();
    vi.advanceTimersByTime(5000);
    expect(slow.seen.map(([t]) => t)).toEqual([0, 400, 1200, 4000]);
  });

  it('pause holds the position; resume carries on from it', () => {
    const r = recorder();
    const p = new Playback({ chunks: CHUNKS, onChunk: r.onChunk });
    p.play();
    vi.advanceTimersByTime(150);
    p.pause();
    expect(p.position).toBe(150);
    vi.advanceTimersByTime(10_000);
    expect(p.text()).toBe('ab');
    expect(p.position).toBe(150);
    p.play();
    vi.advanceTimersByTime(149);
    expect(p.text()).toBe('ab');
    vi.advanceTimersByTime(1);
    expect(p.text()).toBe('abc');
    // c was due 150 ms after resuming, at wall 10 150 + 150.
    expect(r.seen.at(-1)).toEqual([10_300, 'c']);
  });

  it('a speed change applies from that moment on, not to what already played', () => {
    const r = recorder();
    const p = new Playback({ chunks: CHUNKS, onChunk: r.onChunk });
    p.play();
    vi.advanceTimersByTime(200); // recorded position 200: a and b out
    p.setSpeed(4);
    vi.advanceTimersByTime(2000);
    // c: 100 recorded ms left at 4× = 25 ms; d: 700 more at 4× = 175 ms.
    expect(r.seen).toEqual([
      [0, 'a'],
      [100, 'b'],
      [225, 'c'],
      [400, 'd'],
    ]);
  });

  it('+/- step through 0.25× … 16× and stop at the ends', () => {
    const p = new Playback({ chunks: CHUNKS });
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      p.faster();
      seen.push(p.speed);
    }
    expect(seen).toEqual([2, 4, 8, 16, 16, 16, 16, 16]);
    for (let i = 0; i < 8; i++) p.slower();
    expect(p.speed).toBe(0.25);
  });

  it('skip to end emits everything left at once and ends', () => {
    let ended = 0;
    const p = new Playback({ chunks: CHUNKS, onEnd: () => ended++ });
    p.play();
    vi.advanceTimersByTime(120);
    p.skipToEnd();
    expect(p.text()).toBe('abcd');
    expect(p.state).toBe('ended');
    expect(p.position).toBe(1000);
    expect(ended).toBe(1);
    vi.advanceTimersByTime(5000);
    expect(ended).toBe(1);
  });

  it('runs to the recorded duration past the last chunk', () => {
    const p = new Playback({ chunks: CHUNKS, duration: 1500 });
    p.play();
    vi.advanceTimersByTime(1000);
    expect(p.text()).toBe('abcd');
    expect(p.state).toBe('playing');
    vi.advanceTimersByTime(500);
    expect(p.state).toBe('ended');
  });

  it('replayToStream writes a recorded answer at its original pace (plain `sluice replay`)', async () => {
    const exchange = fixtureSession('http-streamed').exchanges[0];
    if (exchange === undefined) throw new Error('fixture has no exchange');
    const written: [number, string][] = [];
    const done = replayToStream(exchange.chunks, { write: (s: string) => written.push([Date.now() - 1_000_000, s]) }, { speed: 2 });
    await vi.advanceTimersByTimeAsync(60_000);
    await done;
    expect(written.map(([, s]) => s).join('')).toBe(exchange.chunks.map((c) => c.text).join(''));
    // Each piece left at half its recorded offset.
    expect(written.map(([t]) => t)).toEqual(exchange.chunks.map((c) => Math.ceil(c.t / 2)));
  });
});
