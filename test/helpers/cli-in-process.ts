import { PassThrough } from 'node:stream';
import { main } from '../../cli/main.js';

/** What one in-process run of the CLI gave: its exit code and everything it wrote. */
export interface InProcessResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `sluice ARGS…` in this process through the CLI's own `main`, with its output captured. `env` is the
 * whole environment the CLI sees (the process's own when omitted). For the compiled binary as a user runs
 * it, see `runCli` in cli-process.ts.
 */
export async function runCliInProcess(args: readonly string[], env?: NodeJS.ProcessEnv): Promise<InProcessResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await main(['node', 'sluice', ...args], { out: { stdout, stderr }, ...(env === undefined ? {} : { env }) });
  return { code, stdout: out, stderr: err };
}
