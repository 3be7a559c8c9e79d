import { cleanup, render } from 'ink-testing-library';
import { afterEach, describe, expect, it } from 'vitest';
import { App, type ResendOutcome } from '../../cli/tui/app.js';
import { fromEvents } from '../../cli/tui/from-events.js';
import type { ExchangeDetail, SessionDetail } from '../../cli/tui/model.js';
import { FIXTURES, fixtureEvents, fixtureSession, KEY, press, settle } from './tui-fixtures.js';
import { ManualClock } from './tui-manual-clock.js';

afterEach(() => cleanup());

const details = FIXTURES.map((f) => fixtureSession(f));
const sessions = details.map((d) => d.summary);
const byName = Object.fromEntries(FIXTURES.map((f, i) => [f, details[i]!])) as Record<(typeof FIXTURES)[number], SessionDetail>;

/** `loadSession` over the fixtures, recording what was asked for. */
function loader() {
  const asked: string[] = [];
  return {
    asked,
    loadSession: async (id: string): Promise<SessionDetail> => {
      asked.push(id);
      const d = details.find((x) => x.summary.id === id);
      if (d === undefined) throw new Error(`no session ${id}`);
      return d;
    },
  };
}

/** What a second upstream answers when the plain session's question is re-sent: a different wording. */
function resentAnswer(): ExchangeDetail {
  const events = fixtureEvents('http-plain').map((e) =>
    e.type === 'exchange.chunk' ? { ...e, data: e.data.replace('Paris is the capital of France.', 'The capital of France is Paris.') } : e,
  );
  return fromEvents(events).exchanges[0]!;
}

const selected = (frame: string | undefined): string | undefined => (frame ?? '').split('\n').find((l) => l.startsWith('›'));

describe('App', () => {
  it('list → session → exchange and back with Esc, keeping selection and filter', async () => {
    const { asked, loadSession } = loader();
    const { lastFrame, stdin } = render(<App sessions={sessions} loadSession={loadSession} />);
    await settle();
    await press(stdin, 'llm', KEY.down, KEY.enter);
    expect(asked).toEqual([byName['http-plain'].summary.id]);
    expect(lastFrame()).toContain(byName['http-plain'].summary.id);
    expect(lastFrame()).toMatch(/#1\s+POST\s+\/v1\/chat\/completions\s+200\s+648ms\s+643ms\s+gpt-4o-mini-2024-07-18/);
    expect(lastFrame()).toMatch(/#2\s+POST\s+\/v1\/embeddings\s+403\s+3ms\s+–\s+text-embedding-3-small\s+denied/);

    await press(stdin, KEY.down, KEY.enter);
    expect(lastFrame()).toContain('#2 POST /v1/embeddings → 403');
    expect(lastFrame()).toContain('error ERR_POLICY_DENIED: Denied by policy no-embeddings-from-notebooks');

    await press(stdin, KEY.escape);
    expect(selected(lastFrame())).toContain('#2');

    await press(stdin, KEY.escape);
    expect(lastFrame()).toContain('filter: llm');
    expect(selected(lastFrame())).toContain('bob@example.com');
  });

  it('p plays a streamed exchange at its recorded pace; Esc returns to the session', async () => {
    const clock = new ManualClock();
    const { loadSession } = loader();
    const { lastFrame, stdin } = render(<App sessions={sessions} loadSession={loadSession} clock={clock} />);
    await settle();
    // alice's streamed session is first
    await press(stdin, KEY.enter, 'p');
    expect(lastFrame()).toContain('Playback #1 POST /v1/chat/completions');
    expect(lastFrame()).toContain('chunk 0/27');
    const chunks = byName['http-streamed'].exchanges[0]!.chunks;
    clock.advance(chunks[1]!.t);
    await settle();
    expect(lastFrame()).toContain('chunk 2/27');
    expect(lastFrame()).toContain('Sure. The');
    await press(stdin, KEY.escape);
    expect(lastFrame()).toContain('↑/↓ select · Enter open · p play');
    // The playback's timers died with it.
    clock.advance(60_000);
    await settle();
    expect(lastFrame()).not.toContain('Playback');
  });

  it('p on a tcp session opens its input/output timeline', async () => {
    const clock = new ManualClock();
    const { loadSession } = loader();
    const { lastFrame, stdin } = render(<App sessions={sessions} loadSession={loadSession} clock={clock} />);
    await settle();
    await press(stdin, 'redis', KEY.enter, 'p');
    expect(lastFrame()).toContain('TCP timeline');
    clock.advance(12);
    await settle();
    expect(lastFrame()).toContain('+PONG↵');
  });

  it('r re-sends and shows the old and new answers with their diff', async () => {
    const { loadSession } = loader();
    const calls: [string, number, boolean][] = [];
    const resend = async (s: SessionDetail, x: ExchangeDetail, o: { maskedOk: boolean }): Promise<ResendOutcome> => {
      calls.push([s.summary.id, x.index, o.maskedOk]);
      return { session: 'ses_new', exchange: resentAnswer() };
    };
    const { lastFrame, stdin } = render(<App sessions={sessions} loadSession={loadSession} resend={resend} width={120} />);
    await settle();
    await press(stdin, 'bob', KEY.enter, 'r');
    expect(calls).toEqual([[byName['http-plain'].summary.id, 0, false]]);
    expect(lastFrame()).toContain('Re-send');
    expect(lastFrame()).toMatch(new RegExp(`old: ${byName['http-plain'].summary.id} #1\\s+new: ses_new #1`));
    expect(lastFrame()).toContain('Paris is the capital of France.');
    expect(lastFrame()).toContain('The capital of France is Paris.');
    await press(stdin, KEY.escape);
    expect(selected(lastFrame())).toContain('#1');
  });

  it('a request recorded masked is re-sent only after the user confirms', async () => {
    const { loadSession } = loader();
    const calls: boolean[] = [];
    const resend = async (_s: SessionDetail, _x: ExchangeDetail, o: { maskedOk: boolean }): Promise<ResendOutcome> => {
      calls.push(o.maskedOk);
      return { session: 'ses_new', exchange: resentAnswer() };
    };
    const { lastFrame, stdin } = render(<App sessions={sessions} loadSession={loadSession} resend={resend} width={120} />);
    await settle();
    await press(stdin, 'carol', KEY.enter, 'r');
    expect(lastFrame()).toContain('The request body was recorded masked');
    await press(stdin, 'n');
    expect(calls).toEqual([]);
    expect(lastFrame()).toContain('↑/↓ select · Enter open');

    await press(stdin, 'r', 'y');
    expect(calls).toEqual([true]);
    expect(lastFrame()).toContain('sent with the masked request body as recorded');
  });

  it('a session that fails to load says why; Esc returns to the list', async () => {
    const { lastFrame, stdin } = render(
      <App sessions={sessions} loadSession={async (id) => Promise.reject(new Error(`gateway answered 404 for ${id}`))} />,
    );
    await settle();
    await press(stdin, KEY.enter);
    expect(lastFrame()?.replace(/\s+/g, ' ')).toContain(`Could not load ${sessions[0]!.id}: gateway answered 404 for ${sessions[0]!.id}`);
    await press(stdin, KEY.escape);
    expect(lastFrame()).toContain('Sessions');
  });

  it('start opens a session straight into an exchange playback (`sluice replay SESSION --exchange N`)', async () => {
    const clock = new ManualClock();
    const { loadSession } = loader();
    const id = byName['http-streamed'].summary.id;
    const { lastFrame, stdin } = render(<App sessions={sessions} loadSession={loadSession} clock={clock} speed={4} start={{ session: id, exchange: 0, play: true }} />);
    await settle();
    expect(lastFrame()).toContain('Playback #1');
    expect(lastFrame()).toContain('4×');
    await press(stdin, KEY.escape);
    expect(lastFrame()).toContain(id);
    expect(selected(lastFrame())).toContain('#1');
  });

  it('start with play on a tcp session opens its timeline (`sluice replay TCP_SESSION --exchange N`)', async () => {
    const clock = new ManualClock();
    const { loadSession } = loader();
    const id = byName['tcp-redis'].summary.id;
    const { lastFrame } = render(<App sessions={sessions} loadSession={loadSession} clock={clock} start={{ session: id, exchange: 0, play: true }} />);
    await settle();
    expect(lastFrame()).toContain('TCP timeline');
    clock.advance(12);
    await settle();
    expect(lastFrame()).toContain('+PONG↵');
  });
});
