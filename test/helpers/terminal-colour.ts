/**
 * Colour in Ink's frames off a terminal. chalk decides once, when it is first imported, whether to emit
 * colour; a test file that asserts colour or inverse video sets FORCE_COLOR before ink (and chalk) load.
 */
import { afterAll } from 'vitest';

/**
 * Sets FORCE_COLOR for the test file that calls it, restoring it after the file's tests. Call it inside
 * `vi.hoisted`, which runs before the file's imports: `await vi.hoisted(async () => (await import(…)).forceColourForThisFile())`.
 */
export function forceColourForThisFile(): void {
  const saved = process.env.FORCE_COLOR;
  process.env.FORCE_COLOR = '1';
  afterAll(() => {
    if (saved === undefined) delete process.env.FORCE_COLOR;
    else process.env.FORCE_COLOR = saved;
  });
}

/** An SGR escape sequence (colour, bold, inverse, and their resets). */
export const ANSI = /\u001B\[[0-9;]*m/g;

/** A frame's text without its colour. */
export function plain(frame: string | undefined): string {
  return (frame ?? '').replace(ANSI, '');
}
