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
  maskProfile: z.array(z.string().min(1)).optional(),
  config: z.string().min(1),
  format: z.enum(['auto', 'json', 'sse', 'ndjson', 'text']).default('auto'),
  json: z.boolean().default(false),
  request: z.boolean().default(false),
  connection: z.string().min(1).optional(),
  style: z.enum(['profile', 'placeholder']).optional(),
});

type Flags = z.output<typeof flagsSchema>;

/** `--mask-profile` may be given more than once: the profiles then act as one, in the order given. */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

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
    .option('--mask-profile <name>', 'the masking profile (masking_profiles.NAME in the config); repeat it for several', collect)
    .option('--request', 'mask the input as a request body before it is forwarded, and print the placeholder map')
    .option('--connection <name>', "with --request: the connection's masking.request profiles and style")
    .addOption(new Option('--style <style>', 'with --request: placeholder writes <LABEL_N> for every value').choices(['profile', 'placeholder']))
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

With --request, masks the input as the gateway masks a request body before forwarding it (JSON or text),
with the profiles of --connection NAME (its masking.request and style) or of --mask-profile, and prints
what would leave on stdout, then the placeholder map (token, then the original value) on stderr, or all
of it with --json. The map holds the very values masking removes: this is a local, offline tool that
reads only the config file and the input; nothing is sent anywhere or kept. A policy rule's
mask_request profiles are tried by naming them with --mask-profile.

Exit codes: 0 done, 1 the request body would be refused (ERR_REQUEST_UNMASKABLE), 2 invalid usage or
configuration, 7 the input would be refused (ERR_MASKING_BLOCKED).`,
    )
    .action(async (file: string, raw: Record<string, unknown>, command: Command) => {
      const parsed = flagsSchema.safeParse(raw);
      if (!parsed.success) throw usageError(parsed.error);
      const flags = parsed.data;
      const wanted = flags.request && flags.connection !== undefined ? [] : (flags.maskProfile ?? []);
      if (wanted.length === 0 && flags.connection === undefined) {
        // The root program owns --profile (the saved login profile) wherever it appears: say so to whoever meant a masking profile.
        const root = command.parent?.parent;
        const loginProfile = root?.getOptionValueSource('profile') === 'cli' ? (root.opts().profile as string) : undefined;
        const required = flags.request ? '--connection NAME or --mask-profile NAME is required with --request' : '--mask-profile NAME is required';
        throw new SluiceError('ERR_USAGE', {
          message:
            loginProfile === undefined
              ? required
              : `${required}: --profile ${loginProfile} selects the saved login profile; to test the masking profile, pass --mask-profile ${loginProfile}`,
        });
      }
      if (!flags.request && (flags.connection !== undefined || flags.style !== undefined)) {
        throw new SluiceError('ERR_USAGE', { message: '--connection and --style go with --request (a request body masked before it is forwarded)' });
      }
      if (flags.connection !== undefined && flags.maskProfile !== undefined) {
        throw new SluiceError('ERR_USAGE', { message: '--connection and --mask-profile cannot be given together: the connection names its request profiles' });
      }
      const { loadMaskingConfigFile } = await import('../../server/config/load.js');
      const { loadMaskingProfiles } = await import('../../server/masking/load-profiles.js');
      const config = await loadMaskingConfigFile(flags.config, { env: ctx.env });
      const profiles = await loadMaskingProfiles(config, { baseDir: dirname(resolve(flags.config)) });
      const request = flags.request ? await requestSettings(flags) : undefined;
      for (const name of request?.profiles ?? wanted) {
        if (!profiles.names().includes(name)) {
          throw new SluiceError('ERR_USAGE', {
            message: `No masking profile named "${name}" in ${flags.config} (profiles: ${profiles.names().join(', ') || 'none'})`,
          });
        }
      }
      const input = await readInput(file);
      if (request !== undefined) {
        const format = flags.format === 'auto' ? (guessFormat(input.toString('utf8')) === 'json' ? 'json' : 'text') : flags.format;
        if (format !== 'json' && format !== 'text') throw new SluiceError('ERR_USAGE', { message: `--request reads JSON or text, not ${format}` });
        const { maskRequestBody } = await import('../../server/masking/request-masking.js');
        const { PlaceholderMap } = await import('../../server/masking/placeholder-map.js');
        const map = new PlaceholderMap();
        const headers = { 'content-type': format === 'json' ? 'application/json' : 'text/plain; charset=utf-8' };
        const result = await maskRequestBody(profiles.forNames(request.profiles)!, { style: request.style, restore: false }, headers, input, map);
        const placeholders = Object.fromEntries(map.entries());
        if (flags.json) {
          printResult(ctx.out, true, { format, profiles: request.profiles, style: request.style, output: result.body.toString('utf8'), placeholders, summary: result.summary }, () => '');
          return;
        }
        ctx.out.stdout.write(result.body);
        if (result.body.length > 0 && result.body[result.body.length - 1] !== 0x0a) ctx.out.stdout.write('\n');
        const counts = result.summary.map((s) => `${s.entity}\t${s.rule}\t${s.count}\n`).join('');
        const tokens = map.entries().map(([token, value]) => `${token}\t${value}\n`).join('');
        ctx.out.stderr.write(
          `request (${format}): ${result.summary.reduce((n, s) => n + s.count, 0)} replaced\n${counts}` +
            `placeholders: ${map.size} (local only: the gateway keeps them in memory for the exchange)\n${tokens}`,
        );
        return;
      }
      const { maskBody } = await import('../../server/masking/mask-body.js');
      const format = flags.format === 'auto' ? guessFormat(input.toString('utf8')) : flags.format;
      const result = maskBody({ profile: profiles.forNames(wanted)!, format, body: input });
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

/** The request masking `mask test --request` applies: a connection's `masking.request`, or the profiles named. */
async function requestSettings(flags: Flags): Promise<{ profiles: string[]; style: 'profile' | 'placeholder' }> {
  if (flags.connection === undefined) return { profiles: flags.maskProfile ?? [], style: flags.style ?? 'profile' };
  const { connectionRequestMasking } = await import('../../server/masking/request-masking-config.js');
  const { parseYamlText } = await import('../../server/config/yaml-locations.js');
  let text: string;
  try {
    text = await readFile(flags.config, 'utf8');
  } catch (cause) {
    throw new SluiceError('ERR_CONFIG_UNREADABLE', { message: `Cannot read ${flags.config}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`, cause });
  }
  const found = connectionRequestMasking(parseYamlText(text, flags.config).value, flags.connection);
  if (typeof found === 'string') throw new SluiceError('ERR_USAGE', { message: `${flags.config}: ${found}` });
  return { profiles: found.profiles, style: flags.style ?? found.style };
}

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
