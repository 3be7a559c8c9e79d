import { useInput, useStdin, type Key } from 'ink';

/**
 * `useInput`, active only when stdin can go raw: off a TTY Ink throws when asked for raw mode, and
 * `isRawModeSupported` is then undefined rather than false.
 */
export function useKeys(handler: (input: string, key: Key) => void, active = true): void {
  const { isRawModeSupported } = useStdin();
  useInput(handler, { isActive: active && isRawModeSupported === true });
}
