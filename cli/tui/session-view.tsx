import { Box, Text } from 'ink';
import { useState } from 'react';
import { formatMs, formatTime, userLabel } from './display-format.js';
import { grpcStatusLabel, statusLabel } from './exchange-lines.js';
import { KeyHelp } from './key-help.js';
import { maskedTotal, type ExchangeDetail, type SessionDetail } from './model.js';
import { useKeys } from './use-keys.js';

/** Props of `SessionView`. */
export interface SessionViewProps {
  readonly session: SessionDetail;
  /** Enter on an exchange. */
  readonly onOpenExchange: (index: number) => void;
  /** `p`: play the exchange back (for tcp sessions, the timeline). */
  readonly onPlay: (index: number) => void;
  /** `r`: re-send the exchange; absent when re-sending is not offered. */
  readonly onResend?: (index: number) => void;
  /** Esc. */
  readonly onBack: () => void;
  readonly initialSelected?: number;
  /** A line shown above the key help (e.g. why a re-send cannot go). */
  readonly notice?: string;
  readonly height?: number;
}

function flags(x: ExchangeDetail): string {
  const out: string[] = [];
  if (x.decision?.action === 'deny') out.push('denied');
  if (x.review !== undefined) out.push(`held:${x.review.outcome}`);
  const masked = maskedTotal(x);
  if (masked > 0) out.push(`masked:${masked}`);
  if (x.streamed) out.push('stream');
  return out.join(' ');
}

/** A session's exchanges in order (status, latency, model): Enter opens, `p` plays, `r` re-sends, Esc goes back. */
export function SessionView({ session, onOpenExchange, onPlay, onResend, onBack, initialSelected = 0, notice, height = 15 }: SessionViewProps) {
  const { summary, exchanges } = session;
  const [selected, setSelected] = useState(Math.min(initialSelected, Math.max(0, exchanges.length - 1)));

  useKeys((input, key) => {
    if (key.upArrow) setSelected((s) => Math.max(0, s - 1));
    else if (key.downArrow) setSelected((s) => Math.min(exchanges.length - 1, s + 1));
    else if (key.escape) onBack();
    else if (exchanges[selected] === undefined) return;
    else if (key.return) onOpenExchange(selected);
    else if (input === 'p') onPlay(selected);
    else if (input === 'r') onResend?.(selected);
  });

  const rows = exchanges.map((x) => [
    `#${x.index + 1}`,
    x.method,
    x.path,
    x.grpc === undefined ? statusLabel(x) : grpcStatusLabel(x, x.grpc),
    formatMs(x.latencyMs),
    formatMs(x.ttfbMs),
    x.model ?? '–',
    flags(x),
  ]);
  const heads = ['#', 'METHOD', 'PATH', 'STATUS', 'LATENCY', 'TTFB', 'MODEL', ''];
  const widths = heads.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const first = Math.min(Math.max(0, selected - height + 1), Math.max(0, rows.length - height));

  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>{summary.id}</Text>
        {`  ${userLabel(summary.user)} · ${summary.connection} (${summary.connectionType}) · ${formatTime(summary.startedAt)} · ${summary.status}`}
        {summary.resendOf === undefined ? '' : ` · re-send of ${summary.resendOf}`}
      </Text>
      <Text bold>{`  ${line(heads)}`}</Text>
      {rows.slice(first, first + height).map((cells, i) => {
        const isSelected = first + i === selected;
        return (
          <Text key={first + i} inverse={isSelected} wrap="truncate-end">
            {`${isSelected ? '›' : ' '} ${line(cells)}`}
          </Text>
        );
      })}
      {exchanges.length === 0 && <Text dimColor>  no exchanges recorded</Text>}
      {notice !== undefined && <Text color="yellow">{notice}</Text>}
      <KeyHelp keys={`↑/↓ select · Enter open · p play${onResend === undefined ? '' : ' · r re-send'} · Esc back`} />
    </Box>
  );
}
