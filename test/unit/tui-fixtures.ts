import { readFileSync } from 'node:fs';
import { fromEvents } from '../../cli/tui/from-events.js';
import type { SessionDetail } from '../../cli/tui/model.js';
import type { RecordedEvent } from '../../cli/tui/recorded-event.js';

/** The recorded-session fixtures under test/fixtures/sessions. */
export const FIXTURES = ['http-streamed', 'http-plain', 'http-masked', 'tcp-redis'] as const;

/** The raw events of one fixture. */
export function fixtureEvents(name: (typeof FIXTURES)[number]): RecordedEvent[] {
  return JSON.parse(readFileSync(new URL(`../fixtures/sessions/${name}.json`, import.meta.url), 'utf8')) as RecordedEvent[];
}

/** One fixture through the adapter, as the TUI receives it. */
export function fixtureSession(name: (typeof FIXTURES)[number]): SessionDetail {
  return fromEvents(fixtureEvents(name));
}

/** Lets Ink and React settle: input parsing, effects and redraws run on the next turns of the loop. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Types each of `keys` in turn (a key sequence or a string, one write each), letting the view settle after each, as a user would. */
export async function press(stdin: { write(data: string): void }, ...keys: string[]): Promise<void> {
  for (const key of keys) {
    stdin.write(key);
    await settle();
  }
}

/** Terminal key sequences as a user's keyboard sends them. */
export const KEY = {
  up: '\u001B[A',
  down: '\u001B[B',
  right: '\u001B[C',
  enter: '\r',
  escape: '\u001B',
  backspace: '\u007F',
} as const;
