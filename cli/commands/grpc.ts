import { writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import type { RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { descriptorSetFromReflection } from '../grpc/reflection-client.js';

/** How long the reflection exchange may take unless `--timeout` says otherwise. */
const DEFAULT_TIMEOUT_MS = 10_000;

const descriptorFlags = z.strictObject({
  fromReflection: z.string().min(1),
  output: z.string().min(1).optional(),
  caFile: z.string().min(1).optional(),
  timeout: z.coerce.number().int().min(1).max(600).optional(),
});

/** `sluice grpc descriptors --from-reflection URL [-o FILE]`: a descriptor set file for a grpc connection's `descriptors`. */
export const registerGrpc: RegisterCommand = (program, ctx) => {
  const grpc = program.command('grpc').summary('tools for grpc connections');
  grpc
    .command('descriptors')
    .description(
      "write a descriptor set (what protoc --include_imports --descriptor_set_out writes) from a server's reflection " +
        'service (grpc.reflection.v1, else v1alpha): every service it lists and the files defining them. Pin the file in ' +
        "a connection's `descriptors`; the gateway never asks the server itself, so review the file as you would a .proto.",
    )
    .requiredOption('--from-reflection <url>', 'grpc://host:port (h2c) or grpcs://host:port (TLS) of the server')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .option('--ca-file <pem>', 'grpcs: CA that signs the server certificate, when not a public one')
    .option('--timeout <seconds>', `how long reflection may take (default ${DEFAULT_TIMEOUT_MS / 1000})`)
    .action(async (raw: Record<string, unknown>) => {
      const parsed = descriptorFlags.safeParse(raw);
      if (!parsed.success) throw usageError(parsed.error);
      const f = parsed.data;
      // The set is binary: on a terminal it would only garble the screen.
      if (f.output === undefined && ctx.out.stdout.isTTY === true) {
        throw new SluiceError('ERR_USAGE', { message: 'The descriptor set is binary: redirect stdout to a file or pass -o FILE' });
      }
      const result = await descriptorSetFromReflection({
        url: f.fromReflection,
        timeoutMs: f.timeout === undefined ? DEFAULT_TIMEOUT_MS : f.timeout * 1000,
        ...(f.caFile === undefined ? {} : { caFile: f.caFile }),
      });
      if (f.output === undefined) ctx.out.stdout.write(result.set);
      else await writeFile(f.output, result.set);
      ctx.out.stderr.write(
        `${f.output === undefined ? 'wrote' : `wrote ${f.output}:`} ${result.files.length} files defining ${result.services.join(', ')} (reflection ${result.version})\n`,
      );
    });
};
