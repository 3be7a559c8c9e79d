import { cleanup, render } from 'ink-testing-library';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExchangeView } from '../../cli/tui/exchange-view.js';
import { ANSI, plain } from '../helpers/terminal-colour.js';
import { fixtureSession, KEY, press, settle } from './tui-fixtures.js';

// Highlighting is colour and inverse video: let chalk emit them although stdout is not a terminal.
await vi.hoisted(async () => (await import('../helpers/terminal-colour.js')).forceColourForThisFile());
afterEach(() => cleanup());

const INVERSE = '\u001B[7m';

/** The text shown inverse in a frame, in order. */
function inverseRuns(frame: string | undefined): string[] {
  return [...(frame ?? '').matchAll(/\u001B\[7m((?:(?!\u001B\[27m).)*)\u001B\[27m/g)].map((m) => (m[1] ?? '').replace(ANSI, ''));
}

describe('ExchangeView', () => {
  const masked = fixtureSession('http-masked').exchanges[0]!;

  it('shows request and response with pretty JSON and the recorded-masked notice', async () => {
    const { lastFrame } = render(<ExchangeView exchange={masked} height={60} onBack={() => {}} />);
    await settle();
    const frame = plain(lastFrame());
    expect(frame).toContain('#1 POST /v1/chat/completions → 200');
    expect(frame).toContain('── request · body recorded masked');
    expect(frame).toContain('── response · body recorded masked');
    expect(frame).toContain('masked EMAIL×2, PHONE×1, ACCOUNT×1, CREDIT_CARD×2');
    // Pretty-printed, two-space indented JSON, one key per line.
    expect(frame).toMatch(/^\{\n {2}"model": "gpt-4o-mini",\n {2}"messages": \[$/m);
    expect(frame).toContain('        "finish_reason": "stop"'.trimStart());
  });

  it('highlights masking placeholders (redact, hash and partial styles), nothing else', async () => {
    const { lastFrame } = render(<ExchangeView exchange={masked} height={60} onBack={() => {}} />);
    await settle();
    expect(lastFrame()).toContain(INVERSE);
    expect(inverseRuns(lastFrame())).toEqual(['[EMAIL]', '<PHONE:3f9a1c>', '[ACCOUNT]', '****4242', '****4242', '[EMAIL]']);
  });

  it('scrolls with ↓/↑ and PgDn, and says where it is', async () => {
    const { lastFrame, stdin } = render(<ExchangeView exchange={masked} height={5} onBack={() => {}} />);
    await settle();
    const total = Number(/of (\d+)/.exec(plain(lastFrame()))?.[1]);
    expect(total).toBeGreaterThan(20);
    expect(plain(lastFrame())).toContain(`lines 1–5 of ${total}`);
    expect(plain(lastFrame()).split('\n')[0]).toContain('#1 POST');

    await press(stdin, KEY.down);
    expect(plain(lastFrame())).toContain(`lines 2–6 of ${total}`);
    expect(plain(lastFrame()).split('\n')[0]).not.toContain('#1 POST');

    await press(stdin, '\u001B[6~'); // PgDn
    expect(plain(lastFrame())).toContain(`lines 7–11 of ${total}`);
    await press(stdin, KEY.up);
    expect(plain(lastFrame())).toContain(`lines 6–10 of ${total}`);

    // Never past the end.
    for (let i = 0; i < 20; i++) stdin.write('\u001B[6~');
    await settle();
    expect(plain(lastFrame())).toContain(`lines ${total - 4}–${total} of ${total}`);
  });

  it('shows a streamed answer as text, not SSE frames; Esc, p and r call back', async () => {
    const streamed = fixtureSession('http-streamed').exchanges[0]!;
    const calls: string[] = [];
    const { lastFrame, stdin } = render(
      <ExchangeView exchange={streamed} height={80} onBack={() => calls.push('back')} onPlay={() => calls.push('play')} onResend={() => calls.push('resend')} />,
    );
    await settle();
    const frame = plain(lastFrame());
    expect(frame).toContain('── answer (streamed, 27 chunks)');
    expect(frame).toContain('waits: review hold 3.0s · first token 1.2s');
    expect(frame).not.toContain('data: {');
    expect(frame.replace(/\s+/g, ' ')).toContain('The nightly batch job timed out because the model server was saturated at 02:00.');
    await press(stdin, 'p', 'r', KEY.escape);
    expect(calls).toEqual(['play', 'resend', 'back']);
  });
});
