import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { openLocalState } from '../auth/local-state.js';
import { login } from '../auth/login-service.js';
import type { RegisterCommand } from '../context.js';
import { usageError } from '../flag-errors.js';
import { printResult } from '../output.js';
import { formatExpiry } from './whoami.js';

const flagsSchema = z.object({
  gateway: z.string().min(1).optional(),
  browser: z.boolean().default(true),
  clientCredentials: z.boolean().default(false),
  clientId: z.string().min(1).optional(),
  clientSecretFile: z.string().min(1).optional(),
  json: z.boolean().default(false),
});

/** `sluice login`: device code for people, client credentials for CI. */
export const registerLogin: RegisterCommand = (program, ctx) => {
  program
    .command('login')
    .description('log in to a gateway with your identity provider (device code; client credentials in CI)')
    .option('--gateway <url>', 'gateway base URL (remembered in the profile)')
    .option('--no-browser', 'never open a browser; just print the URL and code')
    .option('--client-credentials', 'log in as a CI client (client-credentials grant); never prompts')
    .option('--client-id <id>', 'CI client id (with --client-credentials; default SLUICE_CLIENT_ID)')
    .option('--client-secret-file <file>', 'file holding the CI client secret (with --client-credentials; default SLUICE_CLIENT_SECRET)')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText(
      'after',
      `
The gateway tells sluice its identity provider, client id and audience (GET /v1/info).
A person logs in with the device code flow: sluice prints a URL and a code on stderr,
opens a browser on a desktop terminal, and waits until you approve. CI logs in with the
client-credentials grant. Tokens go to the OS keychain, or a private file when there is none.

Environment:
  SLUICE_GATEWAY               gateway URL when --gateway is not given (else the profile's)
  SLUICE_PROFILE               profile name (same as --profile; default "default")
  SLUICE_CLIENT_ID             CI client id for --client-credentials
  SLUICE_CLIENT_SECRET         CI client secret for --client-credentials
  SLUICE_CLIENT_AUTH_METHOD    client_secret_post (default) or client_secret_basic
  SLUICE_DEVICE_POLL_INTERVAL  seconds between device-code polls (default: the provider's, else 5)
  SLUICE_TOKEN_STORE           keyring, file or auto (default auto: keychain if it works, else file)
  XDG_CONFIG_HOME              state lives in $XDG_CONFIG_HOME/sluice (default ~/.config/sluice)
  CI                           when set, never opens a browser

Examples:
  sluice login --gateway https://sluice.example.com
  SLUICE_CLIENT_ID=ci-bot SLUICE_CLIENT_SECRET=... sluice login --client-credentials --gateway https://sluice.example.com`,
    )
    .action(async (raw: Record<string, unknown>) => {
      const parsed = flagsSchema.safeParse(raw);
      if (!parsed.success) throw usageError(parsed.error);
      const flags = parsed.data;
      if (!flags.clientCredentials && (flags.clientId || flags.clientSecretFile)) {
        throw new SluiceError('ERR_USAGE', { message: '--client-id and --client-secret-file are only used with --client-credentials' });
      }
      const profile = ctx.profile();
      const { profiles, store } = await openLocalState({ env: ctx.env });
      const result = await login({
        profile,
        profiles,
        store,
        env: ctx.env,
        gateway: flags.gateway,
        kind: flags.clientCredentials ? 'client_credentials' : 'device_code',
        clientId: flags.clientId,
        clientSecretFile: flags.clientSecretFile,
        prompt: ctx.out.stderr,
        stdoutIsTTY: ctx.out.stdout.isTTY === true,
        noBrowser: !flags.browser,
      });
      const { me, tokens } = result;
      printResult(
        ctx.out,
        flags.json,
        {
          profile,
          gateway: result.gateway,
          issuer: result.info.issuer,
          grant: tokens.grant,
          client_id: tokens.clientId,
          sub: me.sub,
          email: me.email ?? null,
          name: me.name ?? null,
          groups: me.groups,
          roles: me.roles,
          expires_at: tokens.expiresAt ?? null,
          token_store: store.kind,
        },
        () =>
          [
            `Logged in to ${result.gateway} as ${me.sub}${me.email ? ` (${me.email})` : ''}${profile === 'default' ? '' : ` [profile ${profile}]`}`,
            `  groups:  ${me.groups.length ? me.groups.join(', ') : '(none)'}`,
            `  roles:   ${me.roles.length ? me.roles.join(', ') : '(none)'}`,
            `  expires: ${formatExpiry(tokens.expiresAt)}`,
            `  tokens:  ${store.where(profile)}`,
          ].join('\n'),
      );
    });
};
