import { z } from 'zod';
import { ApiClient } from '../api-client.js';
import { getAccessToken } from '../auth/access-token.js';
import type { RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { printResult } from '../output.js';

const flagsSchema = z.object({ json: z.boolean().default(false) });

/** An expiry (seconds since the epoch) as ISO time and how far away it is. */
export function formatExpiry(expiresAt: number | null | undefined, nowMs: number = Date.now()): string {
  if (expiresAt == null) return 'unknown';
  const left = expiresAt - Math.floor(nowMs / 1000);
  const iso = new Date(expiresAt * 1000).toISOString();
  if (left <= 0) return `${iso} (expired)`;
  const rel = left >= 3600 ? `${Math.floor(left / 3600)}h${Math.floor((left % 3600) / 60)}m` : left >= 60 ? `${Math.floor(left / 60)}m` : `${left}s`;
  return `${iso} (in ${rel})`;
}

/** `sluice whoami`: who the gateway thinks you are, with the current token. */
export const registerWhoami: RegisterCommand = (program, ctx) => {
  program
    .command('whoami')
    .description('show who the gateway thinks you are: subject, email, groups, roles, token expiry')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText(
      'after',
      `
Asks the gateway (GET /v1/me) with the current token, so a success proves the gateway accepts it.
A token within 60 s of expiry is refreshed first.

Environment:
  SLUICE_TOKEN        use this bearer token instead of the saved login
  SLUICE_GATEWAY      the gateway, as --gateway: for SLUICE_TOKEN (default: the profile's);
                      with a saved login it must be the profile's
  SLUICE_PROFILE      profile name (same as --profile; default "default")
  SLUICE_CLIENT_SECRET, SLUICE_CLIENT_ID  renew a client-credentials login
  SLUICE_TOKEN_STORE  keyring, file or auto (default auto)
  XDG_CONFIG_HOME     state lives in $XDG_CONFIG_HOME/sluice (default ~/.config/sluice)`,
    )
    .action(async (raw: Record<string, unknown>) => {
      const parsed = flagsSchema.safeParse(raw);
      if (!parsed.success) throw usageError(parsed.error);
      const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
      const me = await new ApiClient({ gateway: access.gateway, token: access.token }).me();
      const expiresAt = me.expires_at ?? access.expiresAt ?? null;
      printResult(
        ctx.out,
        parsed.data.json,
        {
          ...me,
          expires_at: expiresAt,
          gateway: access.gateway,
          profile: access.profile,
          token_source: access.source,
        },
        () =>
          [
            `subject:  ${me.sub}`,
            `email:    ${me.email ?? '-'}`,
            ...(me.name ? [`name:     ${me.name}`] : []),
            `groups:   ${me.groups.length ? me.groups.join(', ') : '(none)'}`,
            `roles:    ${me.roles.length ? me.roles.join(', ') : '(none)'}`,
            `expires:  ${formatExpiry(expiresAt)}`,
            `gateway:  ${access.gateway}`,
            ...(access.source === 'env' ? ['token:    from SLUICE_TOKEN'] : []),
          ].join('\n'),
      );
    });
};
