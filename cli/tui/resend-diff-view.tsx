import { Box, Text, useStdout } from 'ink';
import { KeyHelp } from './key-help.js';
import { useKeys } from './use-keys.js';
import { wordTokens, type AnswerSide, type DiffPart, type ResendDiff } from './word-diff.js';

/** Props of `ResendDiffView`. */
export interface ResendDiffViewProps {
  /** From `resendDiff(old, new)`; the same data `--json` prints. */
  readonly diff: ResendDiff;
  /** Esc. */
  readonly onBack: () => void;
  /** Terminal columns; the stdout's width by default. Below `SIDE_BY_SIDE_MIN` the answers are stacked. */
  readonly width?: number;
  /** A line about how the re-send went (e.g. that the request was sent as recorded, masked). */
  readonly notice?: string;
}

/** Narrower than this, two columns of prose are too thin to read: stack them. */
export const SIDE_BY_SIDE_MIN = 100;

/** Two lines, so a full session id fits a half-width column: which answer, then how it went. */
function SideLabel({ name, side }: { readonly name: string; readonly side: AnswerSide }) {
  return (
    <>
      <Text bold wrap="truncate-end">{`${name}: ${side.session} #${side.exchange + 1}`}</Text>
      <Text dimColor wrap="truncate-end">{`status ${side.status}${side.model === undefined ? '' : ` · ${side.model}`}`}</Text>
    </>
  );
}

function words(parts: readonly DiffPart[], op: DiffPart['op']): number {
  return parts.filter((p) => p.op === op).reduce((n, p) => n + wordTokens(p.text).filter((t) => t.trim() !== '').length, 0);
}

/** One answer with its side of the diff highlighted: deletions on the old side, insertions on the new. */
function DiffText({ parts, side }: { readonly parts: readonly DiffPart[]; readonly side: 'old' | 'new' }) {
  const hidden = side === 'old' ? 'insert' : 'delete';
  return (
    <Text>
      {parts
        .filter((p) => p.op !== hidden)
        .map((p, i) =>
          p.op === 'equal' ? (
            p.text
          ) : (
            <Text key={i} inverse color={p.op === 'delete' ? 'red' : 'green'}>
              {p.text}
            </Text>
          ),
        )}
    </Text>
  );
}

/** The old and the new answer of a re-send, side by side (stacked when narrow), changed words highlighted. */
export function ResendDiffView({ diff, onBack, width, notice }: ResendDiffViewProps) {
  const { stdout } = useStdout();
  const columns = width ?? stdout.columns ?? 80;
  useKeys((_input, key) => {
    if (key.escape) onBack();
  });

  const removed = words(diff.diff, 'delete');
  const added = words(diff.diff, 'insert');
  const summary = removed === 0 && added === 0 ? 'answers are identical' : `${removed} ${removed === 1 ? 'word' : 'words'} removed, ${added} added`;
  const sideBySide = columns >= SIDE_BY_SIDE_MIN;
  const half = Math.floor((columns - 3) / 2);

  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>Re-send</Text>
        {` · ${summary}`}
      </Text>
      {notice !== undefined && <Text color="yellow">{notice}</Text>}
      {sideBySide ? (
        <Box flexDirection="row" marginTop={1}>
          <Box flexDirection="column" width={half}>
            <SideLabel name="old" side={diff.old} />
            <DiffText parts={diff.diff} side="old" />
          </Box>
          <Box width={3} />
          <Box flexDirection="column" width={half}>
            <SideLabel name="new" side={diff.new} />
            <DiffText parts={diff.diff} side="new" />
          </Box>
        </Box>
      ) : (
        <Box flexDirection="column" marginTop={1}>
          <SideLabel name="old" side={diff.old} />
          <DiffText parts={diff.diff} side="old" />
          <Box marginTop={1} flexDirection="column">
            <SideLabel name="new" side={diff.new} />
          </Box>
          <DiffText parts={diff.diff} side="new" />
        </Box>
      )}
      <KeyHelp keys="Esc back" />
    </Box>
  );
}
