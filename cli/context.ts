import type { Command } from 'commander';
import type { Output } from './output.js';

/** What every command receives besides its own flags. */
export interface CliContext {
  out: Output;
  env: NodeJS.ProcessEnv;
  /** The selected profile (`--profile NAME`, `SLUICE_PROFILE`, else "default"). */
  profile(): string;
  /** Whether `--json` was given to the running command. */
  json(): boolean;
  /** Set by a command whose exit code is not its own (`sluice run` exits with its child's). */
  exitCode?: number;
}

/** A command module registers itself on the program. */
export type RegisterCommand = (program: Command, ctx: CliContext) => void;
