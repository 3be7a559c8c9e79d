import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { DEFAULT_KEY_ID } from '../../server/recording/key-ring.js';
import { ApiClient } from '../api-client.js';
import { getAccessToken } from '../auth/access-token.js';
import type { RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';

const keyIdPattern = /^[A-Za-z0-9._-]{1,64}$/;

const rotateFlags = z.object({
  id: z.string().regex(keyIdPattern, 'must be 1-64 letters, digits, ".", "_" or "-"').optional(),
  current: z.array(z.string().regex(keyIdPattern, 'must be 1-64 letters, digits, ".", "_" or "-"')).default([DEFAULT_KEY_ID]),
  json: z.boolean().default(false),
});

const recordingsFlags = z.object({
  retry: z.string().regex(/^ses_[0-9A-Za-z]{1,64}$/, 'must be a session id (ses_…)').optional(),
  json: z.boolean().default(false),
});

const spooledSession = z.object({
  session: z.string(),
  file: z.string(),
  status: z.enum(['spooled', 'uploading', 'quarantined']),
  bytes: z.number(),
  attempts: z.number(),
  last_error: z.string().nullable(),
  next_attempt_at: z.string().nullable(),
  quarantine_reason: z.string().nullable(),
});
const spoolListing = z.object({
  spool: z.object({
    dir: z.string().nullable(),
    shipping: z.boolean(),
    bytes: z.number(),
    max_bytes: z.number().nullable(),
    admitting: z.boolean(),
    spooled: z.number(),
    quarantined: z.number(),
  }),
  sessions: z.array(spooledSession),
});
const retried = z.object({ session: z.string(), retried: z.array(z.string()) });

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
    .command('recordings')
    .description(
      'List the finished sessions the gateway holds in its recording spool for the archive (storage.recordings): ' +
        'status spooled, uploading or quarantined, bytes, upload attempts and the last error (GET /v1/admin/recordings; admins). ' +
        'A quarantined session stays in the spool and is not shipped until --retry clears it. Each gateway process ' +
        'answers for its own spool.',
    )
    .option('--retry <id>', 'clear the quarantine of a session (ses_…) and ship it now')
    .option('--json', 'print JSON', false)
    .action(async (raw: Record<string, unknown>) => {
      const parsed = recordingsFlags.safeParse(raw);
      if (!parsed.success) throw usageError(parsed.error);
      const f = parsed.data;
      const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
      const api = new ApiClient({ gateway: access.gateway, token: access.token });
      if (f.retry !== undefined) {
        const out = await api.request({ method: 'POST', path: `/v1/admin/recordings/${encodeURIComponent(f.retry)}/retry`, schema: retried });
        ctx.out.stdout.write(f.json ? `${JSON.stringify(out, null, 2)}\n` : `Retrying ${out.session}: ${out.retried.join(', ')}\n`);
        return;
      }
      const listing = await api.request({ path: '/v1/admin/recordings', schema: spoolListing });
      if (f.json) {
        ctx.out.stdout.write(`${JSON.stringify(listing, null, 2)}\n`);
        return;
      }
      const { spool } = listing;
      if (!spool.shipping) {
        ctx.out.stdout.write('Sessions are kept where they are written (no storage.recordings): nothing waits in a spool.\n');
        return;
      }
      ctx.out.stdout.write(
        `spool ${spool.dir}: ${spool.bytes} of ${spool.max_bytes} bytes, ${spool.spooled} waiting, ${spool.quarantined} quarantined${spool.admitting ? '' : '; FULL: new exchanges are refused'}\n`,
      );
      for (const s of listing.sessions) {
        const why = s.quarantine_reason ?? s.last_error;
        ctx.out.stdout.write(`${s.session}  ${s.status.padEnd(11)}  ${String(s.bytes).padStart(10)} B  ${s.attempts} attempt${s.attempts === 1 ? '' : 's'}${why === null ? '' : `  ${why}`}\n`);
      }
    });

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
