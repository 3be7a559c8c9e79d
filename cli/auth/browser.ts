import { spawn } from 'node:child_process';

/** Options for {@link shouldOpenBrowser}. */
export interface BrowserDecisionOptions {
  env: NodeJS.ProcessEnv;
  stdoutIsTTY: boolean;
  platform?: NodeJS.Platform;
  /** `--no-browser`. */
  disabled?: boolean;
}

/**
 * Open a browser only where someone is sitting at a desktop: stdout is a terminal and a display exists
 * (or macOS). Never in CI, over plain SSH or when output is piped: the URL on stderr is enough there.
 */
export function shouldOpenBrowser(options: BrowserDecisionOptions): boolean {
  if (options.disabled || options.env.CI) return false;
  if (!options.stdoutIsTTY) return false;
  const platform = options.platform ?? process.platform;
  if (platform === 'darwin') return true;
  return Boolean(options.env.DISPLAY || options.env.WAYLAND_DISPLAY);
}

/** Ask the desktop to open `url`; resolves whether the opener could be started (never throws). */
export function openBrowser(url: string, platform: NodeJS.Platform = process.platform): Promise<boolean> {
  const command = platform === 'darwin' ? 'open' : 'xdg-open';
  return new Promise((resolve) => {
    try {
      const child = spawn(command, [url], { stdio: 'ignore', detached: true });
      child.once('error', () => resolve(false));
      child.once('spawn', () => {
        child.unref();
        resolve(true);
      });
    } catch {
      resolve(false);
    }
  });
}
