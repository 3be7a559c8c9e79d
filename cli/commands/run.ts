import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { RegisterCommand } from '../context.js';
import { openTunnel } from '../tunnel/open-tunnel.js';
import { describeEvent } from '../tunnel/tunnel-status.js';
import { tunnelOptions } from './connect.js';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

export const registerRun: RegisterCommand = (program, ctx) => {
  program
    .command('run')
    .summary('run a command with a tunnel to a connection')
    .description(
      'Open a tunnel to the connection NAME on an ephemeral local port, run COMMAND with SLUICE_URL set to ' +
        'it (and, for http connections, OPENAI_BASE_URL to its /v1 base and OPENAI_API_KEY to a placeholder ' +
        'when unset: the gateway holds the real credential), forward signals to it, close the tunnel when it ' +
        'ends and exit with its exit code. For CI jobs and notebook launchers.',
    )
    .argument('<name>', 'the connection (see `sluice connections`)')
    .argument('<command...>', 'the command and its arguments, after --')
    .option('-p, --port <n>', 'local port (default: any free port)')
    .option('--bind <address>', 'local address to listen on', '127.0.0.1')
    .option('--reason <text>', 'why you connect; recorded with the session')
    .addHelpText('after', '\nExample:\n  sluice run llm -- python eval.py --model demo\n\nExit code: the command\'s own (128+N when it died of signal N); 127 when it cannot be started.')
    .action(async (name: string, command: string[], opts: { port?: string; bind: string; reason?: string }) => {
      const tunnel = await openTunnel(ctx, { connection: name, ...tunnelOptions(opts) });
      tunnel.client.on('event', (event) => {
        if (event.kind !== 'connected' || event.reconnect) ctx.out.stderr.write(`sluice: ${describeEvent(event, false)}\n`);
      });
      const env: NodeJS.ProcessEnv = { ...ctx.env, SLUICE_URL: tunnel.localUrl, SLUICE_SESSION_ID: tunnel.hello.session_id };
      if (tunnel.openAiBaseUrl) {
        env.OPENAI_BASE_URL = tunnel.openAiBaseUrl;
        env.OPENAI_API_KEY ??= 'sluice-managed';
      }
      const [file, ...args] = command as [string, ...string[]];
      const child = spawn(file, args, { env, stdio: 'inherit' });
      const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
      const handlers = FORWARDED.map((s) => [s, forward(s)] as const);
      for (const [s, h] of handlers) process.on(s, h);
      tunnel.client.once('fatal', (err) => {
        ctx.out.stderr.write(`sluice: the tunnel failed: ${err.message} (${err.code})\n`);
      });
      ctx.exitCode = await new Promise<number>((resolve) => {
        child.once('error', (err: NodeJS.ErrnoException) => {
          ctx.out.stderr.write(`sluice: cannot run ${file}: ${err.code === 'ENOENT' ? 'command not found' : err.message}\n`);
          resolve(127);
        });
        child.once('exit', (code, signal) => {
          resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
        });
      });
      for (const [s, h] of handlers) process.off(s, h);
      await tunnel.close();
    });
};
