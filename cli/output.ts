import { ERRORS, EXIT, SluiceError, isSluiceError } from '../shared/errors.js';

/** Where a command writes; tests and the TUI pass their own streams. */
export interface Output {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export const processOutput: Output = { stdout: process.stdout, stderr: process.stderr };

/** Print data: pretty JSON with `--json`, otherwise the plain-text rendering. */
export function printResult(out: Output, json: boolean, data: unknown, plain: () => string): void {
  out.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${plain()}\n`);
}

/** Print an error once, at the top, and return its exit code from the error table. */
export function reportError(out: Output, err: unknown, json: boolean): number {
  if (isSluiceError(err)) {
    if (json) out.stderr.write(`${JSON.stringify(err.toJSON())}\n`);
    else out.stderr.write(humanLine(err));
    return err.exitCode;
  }
  const e = err as { code?: string; exitCode?: number; message?: string };
  if (typeof e?.code === 'string' && e.code.startsWith('commander.')) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  const wrapped = new SluiceError('ERR_INTERNAL', { message: `Internal error: ${e?.message ?? String(err)}`, cause: err });
  if (json) out.stderr.write(`${JSON.stringify(wrapped.toJSON())}\n`);
  else out.stderr.write(humanLine(wrapped));
  if (process.env.SLUICE_DEBUG) out.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
  return ERRORS.ERR_INTERNAL.exit;
}

/** `sluice: first line (ERR_CODE)` followed by any further lines of the message. */
function humanLine(err: SluiceError): string {
  const [first, ...rest] = err.message.split('\n');
  return [`sluice: ${first} (${err.code})`, ...rest].join('\n') + '\n';
}
