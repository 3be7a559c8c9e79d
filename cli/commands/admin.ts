import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { DEFAULT_KEY_ID } from '../../server/recording/key-ring.js';
import type { RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';

const keyIdPattern = /^[A-Za-z0-9._-]{1,64}$/;

const rotateFlags = z.object({
  id: z.string().regex(keyIdPattern, 'must be 1-64 letters, digits, ".", "_" or "-"').optional(),
  current: z.array(z.string().regex(keyIdPattern, 'must be 1-64 letters, digits, ".", "_" or "-"')).default([DEFAULT_KEY_ID]),
  json: z.boolean().default(false),
});

/** The environment variable a key id's value is read from in the snippet: `SLUICE_MASTER_KEY_<ID>`. */
export function keyEnvName(id: string): string {
  return id === DEFAULT_KEY_ID ? 'SLUICE_MASTER_KEY' : `SLUICE_MASTER_KEY_${id.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** The `storage.master_keys` snippet with the new key first and the current ones after it. */
export function rotationSnippet(newId: string, currentIds: readonly string[]): string {
  const lines = ['storage:', '  master_keys:', `    - id: ${newId}            # new sessions are wrapped with the first key`, `      key: \${env:${keyEnvName(newId)}}`];
  for (const id of currentIds) lines.push(`    - id: ${id}`, `      key: \${env:${keyEnvName(id)}}`);
  return lines.join('\n');
}

/** `sluice admin rotate-key`: a new master key and where it goes; offline, nothing is changed. */
export const registerAdmin: RegisterCommand = (program, ctx) => {
  const admin = program.command('admin').summary('gateway administration helpers').description('Helpers for operators of a gateway.');

  admin
    .command('rotate-key')
    .description(
      'Print a new random master key (32 bytes, base64) and the storage.master_keys snippet that puts it first. ' +
        'New sessions are wrapped with the first key; keep every older key below it so existing sessions still ' +
        'decrypt. A lone storage.master_key has the id "default". Restart the gateway to apply.',
    )
    .option('--id <id>', 'id of the new key (default k-YYYYMMDD-HHMMSS, UTC)')
    .option('--current <ids...>', 'ids of the keys in use now, newest first', [DEFAULT_KEY_ID])
    .option('--json', 'print JSON', false)
    .action((raw: Record<string, unknown>) => {
      const parsed = rotateFlags.safeParse(raw);
      if (!parsed.success) throw usageError(parsed.error);
      const f = parsed.data;
      const id = f.id ?? `k-${new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-')}`;
      if (f.current.includes(id)) throw new SluiceError('ERR_USAGE', { message: `The new key id "${id}" is already in use` });
      const key = randomBytes(32).toString('base64');
      const snippet = rotationSnippet(id, f.current);
      if (f.json) {
        ctx.out.stdout.write(`${JSON.stringify({ id, key, env: keyEnvName(id), snippet }, null, 2)}\n`);
        return;
      }
      ctx.out.stdout.write(
        [
          `New master key "${id}" (keep it secret; it cannot be shown again):`,
          '',
          `  ${keyEnvName(id)}=${key}`,
          '',
          'Put it first in storage.master_keys, keeping the keys in use now below it so their sessions still decrypt:',
          '',
          snippet,
          '',
          'Then restart the gateway. `sluice audit verify --key-file` takes the same list as YAML/JSON [{id, key}].',
          '',
        ].join('\n'),
      );
    });
};
