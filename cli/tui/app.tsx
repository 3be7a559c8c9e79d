import { Box, Text } from 'ink';
import { useEffect, useRef, useState } from 'react';
import { answerOf } from './exchange-lines.js';
import { ExchangeView } from './exchange-view.js';
import { KeyHelp } from './key-help.js';
import type { ExchangeDetail, SessionDetail, SessionSummary } from './model.js';
import type { Clock } from './playback.js';
import { PlaybackView } from './playback-view.js';
import { ResendDiffView } from './resend-diff-view.js';
import { SessionList } from './session-list.js';
import { SessionView } from './session-view.js';
import { TcpTimelineView } from './tcp-timeline-view.js';
import { useKeys } from './use-keys.js';
import { resendDiff, type ResendDiff } from './word-diff.js';

/** What a re-send produced: the new session and its exchange, as recorded. */
export interface ResendOutcome {
  readonly session: string;
  readonly exchange: ExchangeDetail;
}

/** Props of `App`. All I/O comes in through these callbacks; the command file wires the API client. */
export interface AppProps {
  /** The session list (from `GET /v1/sessions`). */
  readonly sessions: readonly SessionSummary[];
  /** Loads one session with its exchanges (`GET /v1/sessions/:id` + `/events`, through `fromEvents`). */
  readonly loadSession: (id: string) => Promise<SessionDetail>;
  /**
   * Sends a recorded request through the gateway again as the current user. `maskedOk` is true only
   * after the user confirmed sending a request whose body was recorded masked. Absent: no `r` key.
   */
  readonly resend?: (session: SessionDetail, exchange: ExchangeDetail, options: { readonly maskedOk: boolean }) => Promise<ResendOutcome>;
  /** Open this session (and exchange, or its playback) first, as `sluice replay SESSION` does. */
  readonly start?: { readonly session: string; readonly exchange?: number; readonly play?: boolean };
  /** Esc on the list with an empty filter. */
  readonly onExit?: () => void;
  /** Injected for tests; the system clock otherwise. */
  readonly clock?: Clock;
  /** Initial playback speed. */
  readonly speed?: number;
  /** Terminal size; the views use their defaults when absent. */
  readonly width?: number;
  readonly height?: number;
}

type Route =
  | { readonly name: 'list'; readonly filter: string; readonly selectedId?: string }
  | { readonly name: 'loading'; readonly id: string; readonly back: Route }
  | { readonly name: 'failed'; readonly message: string; readonly back: Route }
  | SessionRoute
  | { readonly name: 'exchange'; readonly detail: SessionDetail; readonly index: number; readonly back: Route }
  | { readonly name: 'playback'; readonly detail: SessionDetail; readonly index: number; readonly back: Route }
  | { readonly name: 'timeline'; readonly detail: SessionDetail; readonly back: Route }
  | { readonly name: 'confirm-masked'; readonly detail: SessionDetail; readonly index: number; readonly back: Route }
  | { readonly name: 'resending'; readonly detail: SessionDetail; readonly index: number; readonly back: Route }
  | { readonly name: 'diff'; readonly diff: ResendDiff; readonly notice?: string; readonly back: Route };

interface SessionRoute {
  readonly name: 'session';
  readonly detail: SessionDetail;
  readonly selected: number;
  readonly notice?: string;
  readonly back: Route;
}

const LIST: Route = { name: 'list', filter: '' };

/** Methods whose requests carry no body, so an unrecorded body does not stop a re-send. */
const BODILESS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The whole TUI: session list → session → exchange, playback, tcp timeline, re-send diff; Esc walks back. */
export function App({ sessions, loadSession, resend, start, onExit, clock, speed, width, height }: AppProps) {
  const [route, setRoute] = useState<Route>(start === undefined ? LIST : { name: 'loading', id: start.session, back: LIST });
  // Only the latest request may move the route: a slow load that the user left must not pull them back.
  const pending = useRef(0);
  const rows = height === undefined ? {} : { height: Math.max(3, height - 5) };

  const open = (id: string, back: Route): void => {
    const ticket = ++pending.current;
    setRoute({ name: 'loading', id, back });
    loadSession(id).then(
      (detail) => {
        if (ticket !== pending.current) return;
        const session: Route = { name: 'session', detail, selected: 0, back };
        const x = start?.session === id ? start.exchange : undefined;
        if (x !== undefined && detail.exchanges[x] !== undefined) {
          const at: Route = { ...session, selected: x };
          // A tcp session plays as its byte timeline, as `p` does on it.
          const play: Route = detail.summary.connectionType === 'tcp' ? { name: 'timeline', detail, back: at } : { name: 'playback', detail, index: x, back: at };
          setRoute(start?.play === true ? play : { name: 'exchange', detail, index: x, back: at });
        } else setRoute(session);
      },
      (err: unknown) => {
        if (ticket === pending.current) setRoute({ name: 'failed', message: `Could not load ${id}: ${errorMessage(err)}`, back });
      },
    );
  };

  useEffect(() => {
    if (start !== undefined) open(start.session, LIST);
    // Runs once: `start` is where the TUI opens, not a value it follows.
  }, []);

  const sendAgain = (detail: SessionDetail, index: number, maskedOk: boolean, back: Route): void => {
    const exchange = detail.exchanges[index];
    if (resend === undefined || exchange === undefined) return;
    const ticket = ++pending.current;
    setRoute({ name: 'resending', detail, index, back });
    resend(detail, exchange, { maskedOk }).then(
      (outcome) => {
        if (ticket !== pending.current) return;
        const diff = resendDiff(
          { session: detail.summary.id, exchange: exchange.index, status: exchange.status, ...(exchange.model === undefined ? {} : { model: exchange.model }), text: answerOf(exchange) },
          {
            session: outcome.session,
            exchange: outcome.exchange.index,
            status: outcome.exchange.status,
            ...(outcome.exchange.model === undefined ? {} : { model: outcome.exchange.model }),
            text: answerOf(outcome.exchange),
          },
        );
        setRoute({ name: 'diff', diff, ...(maskedOk ? { notice: 'sent with the masked request body as recorded' } : {}), back });
      },
      (err: unknown) => {
        if (ticket === pending.current) setRoute({ name: 'failed', message: `Re-send failed: ${errorMessage(err)}`, back });
      },
    );
  };

  /** `r` on an exchange: refuse what cannot be re-sent, ask before sending a masked body. */
  const requestResend = (detail: SessionDetail, index: number, origin: Route): void => {
    const exchange = detail.exchanges[index];
    if (exchange === undefined) return;
    // Refusals are shown on the session view the user came through.
    const session: SessionRoute =
      origin.name === 'session' ? origin : origin.name === 'exchange' && origin.back.name === 'session' ? origin.back : { name: 'session', detail, selected: index, back: LIST };
    if (detail.summary.connectionType === 'tcp') setRoute({ ...session, notice: 'tcp exchanges cannot be re-sent' });
    else if (exchange.request.recorded === 'none' && !BODILESS.has(exchange.method)) {
      setRoute({ ...session, notice: 'the request body was not recorded: it cannot be re-sent' });
    } else if (exchange.request.recorded === 'masked') setRoute({ name: 'confirm-masked', detail, index, back: origin });
    else sendAgain(detail, index, false, origin);
  };

  function back(to: Route): void {
    // Leaving a load or a re-send drops its answer when it arrives.
    pending.current++;
    setRoute(to);
  }

  switch (route.name) {
    case 'list':
      return (
        <SessionList
          sessions={sessions}
          initialFilter={route.filter}
          {...(route.selectedId === undefined ? {} : { initialSelectedId: route.selectedId })}
          {...rows}
          onOpen={(id, filter) => open(id, { name: 'list', filter, selectedId: id })}
          {...(onExit === undefined ? {} : { onQuit: onExit })}
        />
      );
    case 'loading':
      return <Waiting text={`Loading ${route.id}…`} onBack={() => back(route.back)} />;
    case 'resending':
      return <Waiting text={`Re-sending #${route.index + 1} through the gateway…`} onBack={() => back(route.back)} />;
    case 'failed':
      return <Failed message={route.message} onBack={() => setRoute(route.back)} />;
    case 'session': {
      const { detail } = route;
      const here = (selected: number): SessionRoute => ({ name: 'session', detail, selected, back: route.back });
      return (
        <SessionView
          session={detail}
          initialSelected={route.selected}
          {...(route.notice === undefined ? {} : { notice: route.notice })}
          {...rows}
          onBack={() => setRoute(route.back)}
          onOpenExchange={(index) => setRoute({ name: 'exchange', detail, index, back: here(index) })}
          onPlay={(index) =>
            setRoute(detail.summary.connectionType === 'tcp' ? { name: 'timeline', detail, back: here(index) } : { name: 'playback', detail, index, back: here(index) })
          }
          {...(resend === undefined ? {} : { onResend: (index: number) => requestResend(detail, index, here(index)) })}
        />
      );
    }
    case 'exchange': {
      const { detail, index } = route;
      const exchange = detail.exchanges[index];
      if (exchange === undefined) return <Failed message={`No exchange #${index + 1}`} onBack={() => setRoute(route.back)} />;
      return (
        <ExchangeView
          exchange={exchange}
          {...rows}
          onBack={() => setRoute(route.back)}
          onPlay={() => setRoute(detail.summary.connectionType === 'tcp' ? { name: 'timeline', detail, back: route } : { name: 'playback', detail, index, back: route })}
          {...(resend === undefined ? {} : { onResend: () => requestResend(detail, index, route) })}
        />
      );
    }
    case 'playback': {
      const exchange = route.detail.exchanges[route.index];
      if (exchange === undefined) return <Failed message={`No exchange #${route.index + 1}`} onBack={() => setRoute(route.back)} />;
      return (
        <PlaybackView
          exchange={exchange}
          onBack={() => setRoute(route.back)}
          {...(clock === undefined ? {} : { clock })}
          {...(speed === undefined ? {} : { speed })}
          {...(width === undefined ? {} : { barWidth: Math.max(10, width - 20) })}
          {...rows}
        />
      );
    }
    case 'timeline':
      return (
        <TcpTimelineView
          timeline={route.detail.timeline}
          onBack={() => setRoute(route.back)}
          {...(clock === undefined ? {} : { clock })}
          {...(speed === undefined ? {} : { speed })}
          {...(width === undefined ? {} : { barWidth: Math.max(10, width - 20) })}
          {...rows}
        />
      );
    case 'confirm-masked':
      return (
        <ConfirmMasked
          onAnswer={(yes) => (yes ? sendAgain(route.detail, route.index, true, route.back) : setRoute(route.back))}
        />
      );
    case 'diff':
      return (
        <ResendDiffView
          diff={route.diff}
          onBack={() => setRoute(route.back)}
          {...(route.notice === undefined ? {} : { notice: route.notice })}
          {...(width === undefined ? {} : { width })}
        />
      );
  }

}

function Waiting({ text, onBack }: { readonly text: string; readonly onBack: () => void }) {
  useKeys((_input, key) => {
    if (key.escape) onBack();
  });
  return (
    <Box flexDirection="column">
      <Text>{text}</Text>
      <KeyHelp keys="Esc back" />
    </Box>
  );
}

function Failed({ message, onBack }: { readonly message: string; readonly onBack: () => void }) {
  useKeys((_input, key) => {
    if (key.escape) onBack();
  });
  return (
    <Box flexDirection="column">
      <Text color="red">{message}</Text>
      <KeyHelp keys="Esc back" />
    </Box>
  );
}

function ConfirmMasked({ onAnswer }: { readonly onAnswer: (yes: boolean) => void }) {
  useKeys((input) => onAnswer(input === 'y' || input === 'Y'));
  return (
    <Box flexDirection="column">
      <Text color="yellow">The request body was recorded masked: re-sending sends the placeholders, not the original values.</Text>
      <Text>Send it masked? y to send, any other key to cancel</Text>
    </Box>
  );
}
