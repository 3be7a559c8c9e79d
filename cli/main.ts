import { Command, Option } from 'commander';
import { SluiceError } from '../shared/errors.js';
import { VERSION } from '../shared/version.js';
import type { CliContext, RegisterCommand } from './context.js';
import { processOutput, reportError, type Output } from './output.js';
import { COMMANDS } from './commands/index.js';

export interface MainOptions {
  out?: Output;
  env?: NodeJS.ProcessEnv;
}

/** Build the commander program with every command registered. */
export function buildProgram(ctx: CliContext, commands: readonly RegisterCommand[] = COMMANDS): Command {
  const program = new Command('sluice')
    .description(
      'sluice — the gateway every inference call goes through. Log in once, then open a local port to a ' +
        'model server; the gateway checks who you are, applies policy, masks sensitive data and records every exchange.',
    )
    .version(VERSION, '-V, --version')
    .addOption(new Option('--profile <name>', 'which saved profile (gateway and login) to use').env('SLUICE_PROFILE'))
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => ctx.out.stdout.write(s),
      writeErr: (s) => ctx.out.stderr.write(s),
    })
    .exitOverride();
  for (const register of commands) register(program, ctx);
  for (const cmd of program.commands) cmd.exitOverride().configureOutput(program.configureOutput());
  return program;
}

/** Run the CLI with argv; resolves to the process exit code. */
export async function main(argv: string[], options: MainOptions = {}): Promise<number> {
  const out = options.out ?? processOutput;
  const env = options.env ?? process.env;
  const jsonRequested = argv.includes('--json');
  let program: Command | undefined;
  const ctx: CliContext = {
    out,
    env,
    profile: () => (program?.opts().profile as string | undefined) ?? env.SLUICE_PROFILE ?? 'default',
    json: () => jsonRequested,
  };
  program = buildProgram(ctx);
  try {
    await program.parseAsync(argv);
    return ctx.exitCode ?? 0;
  } catch (err) {
    if ((err as { code?: string }).code === 'commander.helpDisplayed' || (err as { code?: string }).code === 'commander.version') return 0;
    if ((err as { code?: string }).code?.startsWith('commander.')) {
      return new SluiceError('ERR_USAGE').exitCode;
    }
    return reportError(out, err, jsonRequested);
  }
}
