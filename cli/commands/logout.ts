import { z } from 'zod';
import { logout } from '../auth/logout-service.js';
import { openLocalState } from '../auth/local-state.js';
import type { RevokeResult } from '../auth/oidc.js';
import type { RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { printResult } from '../output.js';
import { formatExpiry } from './whoami.js';

const flagsSchema = z.object({ json: z.boolean().default(false) });

function describe(name: string, result: RevokeResult | null): string {
  if (result === null) return `  ${name}: none held`;
  return result.revoked ? `  ${name}: revoked at the identity provider` : `  ${name}: not revoked (${result.reason})`;
}

/** `sluice logout`: revoke tokens at the IdP where it can, and forget them locally. */
export const registerLogout: RegisterCommand = (program, ctx) => {
  program
    .command('logout')
    .description('revoke your tokens at the identity provider (best effort) and remove them from this machine')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText(
      'after',
      `
The profile keeps its gateway, so a later \`sluice login\` needs no --gateway.
An access token the provider cannot revoke (a signed JWT) stays valid until it expires.

Environment:
  SLUICE_PROFILE        profile name (same as --profile; default "default")
  SLUICE_CLIENT_SECRET  lets a client-credentials login revoke its token
  SLUICE_TOKEN_STORE    keyring, file or auto (default auto)
  XDG_CONFIG_HOME       state lives in $XDG_CONFIG_HOME/sluice (default ~/.config/sluice)`,
    )
    .action(async (raw: Record<string, unknown>) => {
      const parsed = flagsSchema.safeParse(raw);
      if (!parsed.success) throw usageError(parsed.error);
      const profile = ctx.profile();
      const { profiles, store } = await openLocalState({ env: ctx.env });
      const result = await logout({ profile, profiles, store, env: ctx.env });
      printResult(
        ctx.out,
        parsed.data.json,
        {
          profile,
          gateway: result.gateway ?? null,
          removed: result.removed,
          token_store: store.kind,
          revocation: result.removed ? { refresh_token: result.refreshToken, access_token: result.accessToken } : null,
        },
        () => {
          if (!result.removed) return `Not logged in${profile === 'default' ? '' : ` with profile "${profile}"`}: nothing to remove.`;
          const lines = [
            `Logged out${result.gateway ? ` of ${result.gateway}` : ''}: tokens removed from ${store.where(profile)}.`,
            describe('refresh token', result.refreshToken),
            describe('access token', result.accessToken),
          ];
          if (result.accessToken && !result.accessToken.revoked && result.expiresAt !== undefined) {
            lines.push(`  the access token stays valid until ${formatExpiry(result.expiresAt)}`);
          }
          return lines.join('\n');
        },
      );
    });
};
