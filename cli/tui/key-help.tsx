import { Text } from 'ink';

/** The key hints at the bottom of a view, dimmed. */
export function KeyHelp({ keys }: { readonly keys: string }) {
  return <Text dimColor>{keys}</Text>;
}
