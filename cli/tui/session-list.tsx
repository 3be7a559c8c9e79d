import { Box, Text } from 'ink';
import { useState } from 'react';
import { KeyHelp } from './key-help.js';
import type { SessionSummary } from './model.js';
import { columnWidths, filterSessions, SESSION_COLUMNS, sessionCells, tableLine } from './session-table.js';
import { useKeys } from './use-keys.js';

/** Props of `SessionList`. */
export interface SessionListProps {
  readonly sessions: readonly SessionSummary[];
  /** Enter on a row. `filter` is the filter text at that moment, to restore it on the way back. */
  readonly onOpen: (id: string, filter: string) => void;
  /** Esc with an empty filter. */
  readonly onQuit?: () => void;
  /** Filter text to start with (the one `onOpen` reported, when coming back). */
  readonly initialFilter?: string;
  /** Session to select first, when it passes the filter. */
  readonly initialSelectedId?: string;
  /** Rows of sessions shown at once; the list scrolls past that. */
  readonly height?: number;
}

/**
 * The session list: a table of sessions, narrowed as the user types (user, connection, model);
 * ↑/↓ select, Enter opens, Backspace edits the filter, Esc clears it, then quits.
 */
export function SessionList({ sessions, onOpen, onQuit, initialFilter = '', initialSelectedId, height = 15 }: SessionListProps) {
  const [filter, setFilter] = useState(initialFilter);
  const [selected, setSelected] = useState(() => {
    const i = filterSessions(sessions, initialFilter).findIndex((s) => s.id === initialSelectedId);
    return Math.max(0, i);
  });
  const shown = filterSessions(sessions, filter);
  const current = Math.min(selected, Math.max(0, shown.length - 1));

  // Updates are functional: keys can arrive in a burst (paste, key repeat) before the next render.
  const editFilter = (edit: (f: string) => string): void => {
    setFilter(edit);
    setSelected(0);
  };
  const move = (by: number): void => setSelected((s) => Math.max(0, Math.min(shown.length - 1, Math.min(s, shown.length - 1) + by)));

  useKeys((input, key) => {
    if (key.upArrow) move(-1);
    else if (key.downArrow) move(1);
    else if (key.pageUp) move(-height);
    else if (key.pageDown) move(height);
    else if (key.return) {
      const s = shown[current];
      if (s !== undefined) onOpen(s.id, filter);
    } else if (key.escape) {
      if (filter !== '') editFilter(() => '');
      else onQuit?.();
    } else if (key.backspace || key.delete) editFilter((f) => f.slice(0, -1));
    else if (input !== '' && !key.ctrl && !key.meta && !key.tab) editFilter((f) => f + input);
  });

  const rows = shown.map(sessionCells);
  const widths = columnWidths(rows);
  // Keep the selection inside the visible window.
  const first = Math.min(Math.max(0, current - height + 1), Math.max(0, rows.length - height));
  const visible = rows.slice(first, first + height);

  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>Sessions</Text>
        {'  filter: '}
        <Text color="cyan">{filter === '' ? '(type to filter)' : filter}</Text>
        <Text dimColor>{`  ${shown.length} of ${sessions.length}`}</Text>
      </Text>
      <Text bold wrap="truncate-end">{`  ${tableLine(SESSION_COLUMNS, widths)}`}</Text>
      {visible.map((cells, i) => {
        const isSelected = first + i === current;
        return (
          <Text key={shown[first + i]?.id ?? i} inverse={isSelected} wrap="truncate-end">
            {`${isSelected ? '›' : ' '} ${tableLine(cells, widths)}`}
          </Text>
        );
      })}
      {shown.length === 0 && <Text dimColor>  no session matches</Text>}
      <KeyHelp keys="↑/↓ select · Enter open · type to filter · Backspace edit · Esc clear/quit · D/H/M denied/held/masked" />
    </Box>
  );
}
