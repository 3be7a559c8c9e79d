import { render, useApp, useStdout } from 'ink';
import { useEffect, useState, type ReactElement } from 'react';
import type { CliContext } from '../context.js';
import { App, type AppProps } from '../tui/app.js';
import { ResendDiffView } from '../tui/resend-diff-view.js';
import type { ResendDiff } from '../tui/word-diff.js';

/** The terminal's size, following resizes. */
function useTerminalSize(): { width?: number; height?: number } {
  const { stdout } = useStdout();
  const read = () => ({ ...(stdout.columns ? { width: stdout.columns } : {}), ...(stdout.rows ? { height: stdout.rows } : {}) });
  const [size, setSize] = useState(read);
  useEffect(() => {
    const onResize = (): void => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout]);
  return size;
}

/** `App` sized to the terminal; leaving the list quits. */
function TerminalApp(props: Omit<AppProps, 'width' | 'height' | 'onExit'>) {
  const { exit } = useApp();
  return <App {...props} {...useTerminalSize()} onExit={() => exit()} />;
}

/** The re-send diff as a screen of its own; Esc quits. */
function TerminalDiff({ diff, notice }: { readonly diff: ResendDiff; readonly notice?: string }) {
  const { exit } = useApp();
  const { width } = useTerminalSize();
  return <ResendDiffView diff={diff} onBack={() => exit()} {...(width === undefined ? {} : { width })} {...(notice === undefined ? {} : { notice })} />;
}

async function run(ctx: CliContext, element: ReactElement): Promise<void> {
  const instance = render(element, {
    stdout: ctx.out.stdout as NodeJS.WriteStream,
    stderr: ctx.out.stderr as NodeJS.WriteStream,
    stdin: process.stdin,
    exitOnCtrlC: true,
    // Errors go through the command's one error handler, not into the frame.
    patchConsole: false,
  });
  await instance.waitUntilExit();
}

/** Runs the TUI until the user quits (Esc on the list, or Ctrl+C). */
export function runApp(ctx: CliContext, props: Omit<AppProps, 'width' | 'height' | 'onExit'>): Promise<void> {
  return run(ctx, <TerminalApp {...props} />);
}

/** Shows a re-send's diff until Esc or Ctrl+C. */
export function runDiff(ctx: CliContext, diff: ResendDiff, notice?: string): Promise<void> {
  return run(ctx, <TerminalDiff diff={diff} {...(notice === undefined ? {} : { notice })} />);
}
