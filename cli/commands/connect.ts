import { Option } from 'commander';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import type { CliContext, RegisterCommand } from '../context.js';
import { waitForSignal } from '../signals.js';
import { openTunnel } from '../tunnel/open-tunnel.js';
import { reportTunnel } from '../tunnel/tunnel-status.js';

const portSchema = z.coerce.number().int().min(0).max(65535);

/** Flags shared by `connect` and `run`. */
export function tunnelOptions(opts: { port?: string; bind: string; reason?: string }) {
  const port = portSchema.safeParse(opts.port ?? '0');
  if (!port.success) throw new SluiceError('ERR_USAGE', { message: `--port must be a number from 0 to 65535, got "${opts.port}"` });
  if (opts.reason !== undefined && opts.reason.length > 500) throw new SluiceError('ERR_USAGE', { message: '--reason is limited to 500 characters' });
  return { port: port.data, bind: opts.bind, reason: opts.reason };
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
    .option('--bind <address>', 'local address to listen on', '127.0.0.1')
    .option('--reason <text>', 'why you connect; recorded with the session and shown to reviewers')
    .addOption(new Option('--json', 'print the endpoints and events as JSON lines').default(false))
    .addHelpText(
      'after',
      '\nEnvironment:\n  SLUICE_TOKEN, SLUICE_GATEWAY   use this token and gateway instead of the saved login\n\n' +
        'Example:\n  sluice connect llm --port 8080 --reason "eval run 42"\n  OPENAI_BASE_URL=http://127.0.0.1:8080/v1 python notebook.py',
    )
    .action(async (name: string, opts: { port?: string; bind: string; reason?: string; json: boolean }) => {
      // Listening before the endpoints are printed: a caller may signal as soon as it reads them.
      const signal = waitForSignal(['SIGINT', 'SIGTERM']);
      const tunnel = await openTunnel(ctx, { connection: name, ...tunnelOptions(opts) });
      const { hello } = tunnel;
      if (opts.json) {
        ctx.out.stdout.write(
          `${JSON.stringify({ event: 'ready', connection: hello.connection, session_id: hello.session_id, gateway: tunnel.gateway, local_url: tunnel.localUrl, openai_base_url: tunnel.openAiBaseUrl ?? null })}\n`,
        );
      } else {
        const lines = [
          `Connected to ${hello.connection.name} (${hello.connection.type}) through ${tunnel.gateway} — session ${hello.session_id}`,
          `  ${(hello.connection.type === 'http' ? 'local URL' : 'local address').padEnd(16)} ${tunnel.localUrl}`,
        ];
        if (tunnel.openAiBaseUrl) lines.push(`  ${'OpenAI base URL'.padEnd(16)} ${tunnel.openAiBaseUrl}`);
        lines.push('Ctrl-C closes the tunnel.');
        ctx.out.stdout.write(`${lines.join('\n')}\n`);
      }
      const stopLive = reportTunnel(ctx.out, tunnel, opts.json);
      const failure = await untilStopped(tunnel, signal);
      stopLive();
      await tunnel.close();
      if (failure) throw failure;
      if (!opts.json) ctx.out.stderr.write('tunnel closed\n');
    });
};
