import { cleanup, render } from 'ink-testing-library';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionList } from '../../cli/tui/session-list.js';
import { FIXTURES, fixtureSession, KEY, press, settle } from './tui-fixtures.js';

afterEach(() => cleanup());

const sessions = FIXTURES.map((f) => fixtureSession(f).summary);
const ids = Object.fromEntries(FIXTURES.map((f, i) => [f, sessions[i]!.id]));

/** The data rows of a frame (those holding a user email), in order. */
function rows(frame: string | undefined): string[] {
  return (frame ?? '').split('\n').filter((l) => l.includes('@example.com'));
}

function selectedRow(frame: string | undefined): string | undefined {
  return rows(frame).find((l) => l.startsWith('›'));
}

describe('SessionList', () => {
  it('lists every session with time, user, connection, requests, model, tokens, denied/held/masked', async () => {
    const { lastFrame } = render(<SessionList sessions={sessions} onOpen={() => {}} />);
    await settle();
    const frame = lastFrame() ?? '';
    expect(frame).toContain('TIME');
    expect(frame).toMatch(/TOKENS\s+D\/H\/M/);
    expect(rows(frame)).toHaveLength(4);
    expect(frame).toMatch(/2025-06-02 09:14\s+alice@example\.com\s+llm\s+1\s+gpt-5-mini-2025-08-07\s+41\/52\s+0\/1\/0$/m);
    expect(frame).toMatch(/bob@example\.com\s+llm\s+2\s+gpt-4o-mini-2024-07-18\s+14\/8\s+1\/0\/0$/m);
    expect(frame).toMatch(/carol@example\.com\s+support-llm\s+1\s+gpt-4o-mini-2024-07-18\s+58\/27\s+0\/0\/6$/m);
    expect(frame).toContain('4 of 4');
  });

  it('typing filters across user, connection and model, and shows the filter text', async () => {
    const { lastFrame, stdin } = render(<SessionList sessions={sessions} onOpen={() => {}} />);
    await settle();
    await press(stdin, 'gpt-4o');
    expect(lastFrame()).toContain('filter: gpt-4o');
    expect(rows(lastFrame()).map((r) => r.match(/\w+@example\.com/)?.[0])).toEqual(['bob@example.com', 'carol@example.com']);
    expect(lastFrame()).toContain('2 of 4');

    // Every word must match: model and connection together.
    await press(stdin, ' support');
    expect(rows(lastFrame())).toHaveLength(1);
    expect(rows(lastFrame())[0]).toContain('carol@example.com');

    // By user (email or subject) and by connection.
    for (let i = 0; i < ' support'.length + 'gpt-4o'.length; i++) stdin.write(KEY.backspace);
    await settle();
    expect(rows(lastFrame())).toHaveLength(4);
    await press(stdin, 'u-dave');
    expect(rows(lastFrame())).toHaveLength(1);
    expect(rows(lastFrame())[0]).toContain('redis');
  });

  it('no match says so; Esc clears the filter, then quits', async () => {
    let quit = 0;
    const { lastFrame, stdin } = render(<SessionList sessions={sessions} onOpen={() => {}} onQuit={() => quit++} />);
    await settle();
    await press(stdin, 'nobody');
    expect(rows(lastFrame())).toHaveLength(0);
    expect(lastFrame()).toContain('no session matches');
    await press(stdin, KEY.escape);
    expect(rows(lastFrame())).toHaveLength(4);
    expect(quit).toBe(0);
    await press(stdin, KEY.escape);
    expect(quit).toBe(1);
  });

  it('↑/↓ move the selection and Enter opens the selected session, within the filter', async () => {
    const opened: [string, string][] = [];
    const { lastFrame, stdin } = render(<SessionList sessions={sessions} onOpen={(id, filter) => opened.push([id, filter])} />);
    await settle();
    expect(selectedRow(lastFrame())).toContain('alice@example.com');
    await press(stdin, KEY.down, KEY.down);
    expect(selectedRow(lastFrame())).toContain('carol@example.com');
    await press(stdin, KEY.up);
    expect(selectedRow(lastFrame())).toContain('bob@example.com');
    await press(stdin, KEY.enter);
    expect(opened).toEqual([[ids['http-plain'], '']]);

    await press(stdin, 'llm');
    // A new filter starts the selection over at its first row.
    expect(selectedRow(lastFrame())).toContain('alice@example.com');
    await press(stdin, KEY.down, KEY.down, KEY.down);
    // Three rows match "llm"; the selection stops at the last.
    expect(selectedRow(lastFrame())).toContain('carol@example.com');
    await press(stdin, KEY.enter);
    expect(opened.at(-1)).toEqual([ids['http-masked'], 'llm']);
  });

  it('scrolls to keep the selection visible when there are more sessions than rows', async () => {
    const { lastFrame, stdin } = render(<SessionList sessions={sessions} height={2} onOpen={() => {}} />);
    await settle();
    expect(rows(lastFrame())).toHaveLength(2);
    await press(stdin, KEY.down, KEY.down, KEY.down);
    expect(rows(lastFrame()).map((r) => r.match(/\w+@example\.com/)?.[0])).toEqual(['carol@example.com', 'dave@example.com']);
    expect(selectedRow(lastFrame())).toContain('dave@example.com');
  });
});
