import { Box, useStdout } from 'ink';
import { useState } from 'react';
import { wrapLine } from './display-format.js';
import { exchangeLines, type LineStyle } from './exchange-lines.js';
import { HighlightedText } from './highlighted-text.js';
import { KeyHelp } from './key-help.js';
import type { ExchangeDetail } from './model.js';
import { useKeys } from './use-keys.js';

/** Props of `ExchangeView`. */
export interface ExchangeViewProps {
  readonly exchange: ExchangeDetail;
  /** Esc. */
  readonly onBack: () => void;
  /** `p`. */
  readonly onPlay?: () => void;
  /** `r`; absent when re-sending is not offered. */
  readonly onResend?: () => void;
  /** Lines of content shown at once; ↑/↓, PgUp/PgDn, Home/End scroll the rest. */
  readonly height?: number;
  /** Columns to wrap at; the stdout's width by default. */
  readonly width?: number;
}

const STYLE: Record<LineStyle, { color?: string; bold?: boolean; dimColor?: boolean }> = {
  title: { bold: true },
  heading: { color: 'cyan', bold: true },
  meta: { dimColor: true },
  body: {},
  notice: { color: 'red' },
};

/** One exchange: request and response with pretty JSON, masking placeholders highlighted, scrollable. */
export function ExchangeView({ exchange, onBack, onPlay, onResend, height = 20, width }: ExchangeViewProps) {
  const { stdout } = useStdout();
  const columns = width ?? stdout.columns ?? 80;
  // Long lines are wrapped, not cut: a masked value at the end of a long string must stay visible.
  const lines = exchangeLines(exchange).flatMap((l) => wrapLine(l.text, columns).map((text) => ({ text, style: l.style })));
  const maxTop = Math.max(0, lines.length - height);
  const [top, setTop] = useState(0);
  const scrollBy = (by: number): void => setTop((t) => Math.max(0, Math.min(maxTop, t + by)));

  useKeys((input, key) => {
    if (key.escape) onBack();
    else if (key.upArrow) scrollBy(-1);
    else if (key.downArrow) scrollBy(1);
    else if (key.pageUp) scrollBy(-height);
    else if (key.pageDown || input === ' ') scrollBy(height);
    else if (key.home) setTop(0);
    else if (key.end) setTop(maxTop);
    else if (input === 'p') onPlay?.();
    else if (input === 'r') onResend?.();
  });

  const shown = lines.slice(top, top + height);
  return (
    <Box flexDirection="column">
      {shown.map((l, i) => (
        <HighlightedText key={top + i} text={l.text === '' ? ' ' : l.text} {...STYLE[l.style]} />
      ))}
      <KeyHelp
        keys={`lines ${lines.length === 0 ? 0 : top + 1}–${top + shown.length} of ${lines.length} · ↑/↓ PgUp/PgDn scroll${onPlay === undefined ? '' : ' · p play'}${onResend === undefined ? '' : ' · r re-send'} · Esc back`}
      />
    </Box>
  );
}
