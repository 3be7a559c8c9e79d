import type { CliContext } from '../context.js';

/** Set to something other than "0"/"false", these make Ink draw only its last frame: no use for a TUI. */
const CI_VARIABLES = ['CI', 'CONTINUOUS_INTEGRATION'];

/** Whether to open the Ink TUI: a terminal on both ends and not a CI job; otherwise plain lines. */
export function isInteractive(ctx: CliContext, stdin: { isTTY?: boolean } = process.stdin): boolean {
  const inCi = CI_VARIABLES.some((k) => k in ctx.env && ctx.env[k] !== '0' && ctx.env[k] !== 'false');
  return ctx.out.stdout.isTTY === true && stdin.isTTY === true && !inCi;
}
