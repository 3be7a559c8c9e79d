import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import type { RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { printResult } from '../output.js';

/** Bound on what `mask test` reads: it holds its input in memory. */
const MAX_INPUT = 64 * 1024 * 1024;

const flagsSchema = z.object({
  maskProfile: z.string({ error: '--mask-profile NAME is required' }).min(1),
  config: z.string().min(1),
  format: z.enum(['auto', 'json', 'sse', 'ndjson', 'text']).default('auto'),
  json: z.boolean().default(false),
});

/** `json`, `sse`, `ndjson` or `text`, guessed from the input when `--format auto`. */
export function guessFormat(input: string): 'json' | 'sse' | 'ndjson' | 'text' {
  const head = input.trimStart();
  if (/^(data|event|id|retry):/m.test(head.slice(0, 4096)) && /^data:/m.test(input)) return 'sse';
  if (head.startsWith('{') || head.startsWith('[')) {
    try {
      JSON.parse(input);
      return 'json';
    } catch {
      return isNdjson(input) ? 'ndjson' : 'text';
    }
  }
  return 'text';
}

/** Whether every non-empty line of `input` is a JSON document (one record a line). */
function isNdjson(input: string): boolean {
  const lines = input.split('\n').filter((l) => l.trim() !== '');
  if (lines.length < 2) return false;
  try {
    for (const line of lines) JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}

/** `sluice mask test`: apply a masking profile to a file or stdin and print the result and the counts. */
export const registerMask: RegisterCommand = (program, ctx) => {
  const mask = program.command('mask').description('try masking profiles before deploying them');
  mask
    .command('test')
    .description('apply a masking profile of the gateway config to JSON, SSE or text and print the result and counts')
    .argument('<file>', 'input file, or - for stdin')
    .option('--mask-profile <name>', 'the masking profile (masking_profiles.NAME in the config); required')
    .addOption(new Option('-c, --config <file>', 'gateway configuration (YAML)').env('SLUICE_CONFIG').default('sluice.yaml'))
    .addOption(new Option('--format <format>', 'how to read the input').choices(['auto', 'json', 'sse', 'ndjson', 'text']).default('auto'))
    .option('--json', 'print {format, output, summary} as JSON on stdout')
    .addHelpText(
      'after',
      `
Masks exactly as the gateway masks a response of that content type (SSE deltas through the same
hold-back); prints the masked input on stdout and one "entity rule count" line per rule on stderr.
Values are never printed in the counts. Selector modules are resolved against the config's directory.
Only the masking and masking_profiles sections are read: \${env:NAME} elsewhere in the file need not be set.
--profile stays the saved login profile, as for every command; the masking profile is --mask-profile.

Exit codes: 0 done, 2 invalid usage or configuration, 7 the input would be refused (ERR_MASKING_BLOCKED).`,
    )
    .action(async (file: string, raw: Record<string, unknown>, command: Command) => {
      const parsed = flagsSchema.safeParse(raw);
      if (!parsed.success) {
        // The root program owns --profile (the saved login profile) wherever it appears: say so to whoever meant a masking profile.
        const root = command.parent?.parent;
        const loginProfile = root?.getOptionValueSource('profile') === 'cli' ? (root.opts().profile as string) : undefined;
        if (raw.maskProfile === undefined && loginProfile !== undefined) {
          throw new SluiceError('ERR_USAGE', {
            message: `--mask-profile NAME is required: --profile ${loginProfile} selects the saved login profile; to test the masking profile, pass --mask-profile ${loginProfile}`,
          });
        }
        throw usageError(parsed.error);
      }
      const flags = parsed.data;
      const { loadMaskingConfigFile } = await import('../../server/config/load.js');
      const { loadMaskingProfiles } = await import('../../server/masking/load-profiles.js');
      const { maskBody } = await import('../../server/masking/mask-body.js');
      const config = await loadMaskingConfigFile(flags.config, { env: ctx.env });
      const profiles = await loadMaskingProfiles(config, { baseDir: dirname(resolve(flags.config)) });
      if (!profiles.names().includes(flags.maskProfile)) {
        throw new SluiceError('ERR_USAGE', {
          message: `No masking profile named "${flags.maskProfile}" in ${flags.config} (profiles: ${profiles.names().join(', ') || 'none'})`,
        });
      }
      const input = await readInput(file);
      const format = flags.format === 'auto' ? guessFormat(input.toString('utf8')) : flags.format;
      const result = maskBody({ profile: profiles.forNames([flags.maskProfile])!, format, body: input });
      if (flags.json) {
        printResult(ctx.out, true, { format, output: result.output.toString('utf8'), summary: result.summary }, () => '');
        return;
      }
      ctx.out.stdout.write(result.output);
      if (result.output.length > 0 && result.output[result.output.length - 1] !== 0x0a) ctx.out.stdout.write('\n');
      const lines = result.summary.map((s) => `${s.entity}\t${s.rule}\t${s.count}`);
      ctx.out.stderr.write(`${format}: ${result.summary.reduce((n, s) => n + s.count, 0)} replaced\n${lines.map((l) => `${l}\n`).join('')}`);
    });
};

async function readInput(file: string): Promise<Buffer> {
  if (file !== '-') {
    try {
      const data = await readFile(file);
      if (data.length > MAX_INPUT) throw new SluiceError('ERR_USAGE', { message: `${file} is larger than ${MAX_INPUT} bytes` });
      return data;
    } catch (cause) {
      if (cause instanceof SluiceError) throw cause;
      throw new SluiceError('ERR_USAGE', { message: `Cannot read ${file}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`, cause });
    }
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_INPUT) throw new SluiceError('ERR_USAGE', { message: `stdin is larger than ${MAX_INPUT} bytes` });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
