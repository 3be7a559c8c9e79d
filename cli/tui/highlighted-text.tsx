import { Text } from 'ink';
import { maskedSegments } from './masked-spans.js';

/** Props of `HighlightedText`. */
export interface HighlightedTextProps {
  readonly text: string;
  readonly color?: string;
  readonly bold?: boolean;
  readonly dimColor?: boolean;
}

/** A line of text with masking placeholders shown inverse in yellow, so masked values stand out. */
export function HighlightedText({ text, color, bold, dimColor }: HighlightedTextProps) {
  return (
    <Text wrap="truncate-end" {...(color === undefined ? {} : { color })} bold={bold ?? false} dimColor={dimColor ?? false}>
      {maskedSegments(text).map((s, i) =>
        s.masked ? (
          <Text key={i} inverse color="yellow">
            {s.text}
          </Text>
        ) : (
          s.text
        ),
      )}
    </Text>
  );
}
