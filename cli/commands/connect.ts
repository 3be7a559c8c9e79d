import { Option } from 'commander';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import type { CliContext, RegisterCommand } from '../context.js';
import { waitForSignal } from '../signals.js';
import { openTunnel } from '../tunnel/open-tunnel.js';
import { reportTunnel } from '../tunnel/tunnel-status.js';

const portSchema = z.coerce.number().int().min(0).max(65535);

/** Flags shared by `connect` and `run`; the local token is on unless `localAuth` is false (`--no-local-auth`). */
export function tunnelOptions(opts: { port?: string; bind: string; reason?: string; socket?: string; localAuth?: boolean }) {
  const port = portSchema.safeParse(opts.port ?? '0');
  if (!port.success) throw new SluiceError('ERR_USAGE', { message: `--port must be a number from 0 to 65535, got "${opts.port}"` });
  if (opts.reason !== undefined && opts.reason.length > 500) throw new SluiceError('ERR_USAGE', { message: '--reason is limited to 500 characters' });
  if (opts.socket !== undefined && opts.socket.trim() === '') throw new SluiceError('ERR_USAGE', { message: '--socket needs a path' });
  if (opts.socket !== undefined && opts.port !== undefined) throw new SluiceError('ERR_USAGE', { message: '--socket and --port exclude each other' });
  return { port: port.data, bind: opts.bind, reason: opts.reason, socket: opts.socket, localAuth: opts.localAuth !== false };
}

/** Resolve when the tunnel fails for good (with its error) or a signal arrives (with nothing). */
export function untilStopped(
  tunnel: { client: { once(e: 'fatal', l: (err: SluiceError) => void): unknown } },
  signal: Promise<unknown>,
): Promise<SluiceError | undefined> {
  return Promise.race([new Promise<SluiceError>((resolve) => tunnel.client.once('fatal', resolve)), signal.then(() => undefined)]);
}

export const registerConnect: RegisterCommand = (program, ctx: CliContext) => {
  program
    .command('connect')
    .summary('open a local port to a connection through the gateway')
    .description(
      'Open a local port that leads, through the gateway, to the connection NAME. Point a notebook, curl or ' +
        'an OpenAI SDK at the printed URL as if it were the model server: the gateway checks every call ' +
        'and injects the upstream credentials. The tunnel reconnects by itself when it drops (the local ' +
        'port stays open) and renews your login before it expires. Ctrl-C closes it.',
    )
    .argument('<name>', 'the connection (see `sluice connections`)')
    .option('-p, --port <n>', 'local port (default: any free port)')
    .option('--bind <address>', 'local address to listen on; anything but loopback is reachable from other machines', '127.0.0.1')
    .option('--socket <path>', 'listen on a Unix socket only you can open (mode 0600) instead of a port')
    .option('--no-local-auth', 'serve http requests without the local token (any local user can then call as you)')
    .option('--reason <text>', 'why you connect; recorded with the session and shown to reviewers')
    .addOption(new Option('--json', 'print the endpoints and events as JSON lines').default(false))
    .addHelpText(
      'after',
      '\nEvery request to the local port of an http connection must carry the printed local token, as\n' +
        '"Authorization: Bearer <token>" (the OpenAI SDKs send their api key so) or "X-Api-Key: <token>".\n\n' +
        'Environment:\n  SLUICE_TOKEN, SLUICE_GATEWAY   use this token and gateway instead of the saved login\n\n' +
        'Example:\n  sluice connect llm --port 8080 --reason "eval run 42"\n' +
        '  OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=<local token> python notebook.py',
    )
    .action(async (name: string, opts: { port?: string; bind: string; socket?: string; localAuth: boolean; reason?: string; json: boolean }) => {
      // Flags first: a usage error must not leave signal handlers behind.
      const options = tunnelOptions(opts);
      // Listening before the endpoints are printed: a caller may signal as soon as it reads them.
      const signal = waitForSignal(['SIGINT', 'SIGTERM']);
      const tunnel = await openTunnel(ctx, { connection: name, ...options });
      const { hello } = tunnel;
      for (const warning of tunnel.warnings) ctx.out.stderr.write(`sluice: warning: ${warning}\n`);
      if (opts.json) {
        const ready = {
          event: 'ready',
          connection: hello.connection,
          session_id: hello.session_id,
          gateway: tunnel.gateway,
          local_url: tunnel.localUrl ?? null,
          local_socket: tunnel.localSocket ?? null,
          openai_base_url: tunnel.openAiBaseUrl ?? null,
          local_token: tunnel.localToken,
          ...(tunnel.warnings.length > 0 ? { warning: tunnel.warnings.join('; ') } : {}),
        };
        ctx.out.stdout.write(`${JSON.stringify(ready)}\n`);
      } else {
        ctx.out.stdout.write(`${readyLines(tunnel).join('\n')}\n`);
      }
      const stopLive = reportTunnel(ctx.out, tunnel, opts.json);
      const failure = await untilStopped(tunnel, signal);
      stopLive();
      await tunnel.close();
      if (failure) throw failure;
      if (!opts.json) ctx.out.stderr.write('tunnel closed\n');
    });
};

/** The text `connect` prints once the tunnel is up. */
function readyLines(tunnel: Awaited<ReturnType<typeof openTunnel>>): string[] {
  const { hello } = tunnel;
  const row = (label: string, value: string) => `  ${label.padEnd(16)} ${value}`;
  const isHttp = hello.connection.type === 'http';
  const lines = [`Connected to ${hello.connection.name} (${hello.connection.type}) through ${tunnel.gateway} — session ${hello.session_id}`];
  if (tunnel.localSocket) lines.push(row('local socket', `${tunnel.localSocket} (mode 0600: only you can connect)`));
  else lines.push(row(isHttp ? 'local URL' : 'local address', tunnel.localUrl!));
  if (tunnel.openAiBaseUrl) lines.push(row('OpenAI base URL', tunnel.openAiBaseUrl));
  if (tunnel.localToken) lines.push(row('local token', tunnel.localToken), row('', 'send it as "Authorization: Bearer <token>" (the SDK api key) or "X-Api-Key"'));
  lines.push('Ctrl-C closes the tunnel.');
  return lines;
}
