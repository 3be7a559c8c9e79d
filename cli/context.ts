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
}

/** A command module registers itself on the program. */
export type RegisterCommand = (program: Command, ctx: CliContext) => void;
