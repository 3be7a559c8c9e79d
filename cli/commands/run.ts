import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { RegisterCommand } from '../context.js';
import { openTunnel } from '../tunnel/open-tunnel.js';
import { describeEvent } from '../tunnel/tunnel-status.js';
import { tunnelOptions } from './connect.js';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

/**
 * Credentials sluice reads from its environment: the child talks to the local port with the local token and
 * has no use for them, and a command run "through the gateway" must not be able to go around it.
 * SLUICE_CLIENT_ID and SLUICE_GATEWAY stay: they name things, they open nothing.
 */
const SECRET_ENV = /^(SLUICE_TOKEN|SLUICE_CLIENT_SECRET|SLUICE_MASTER_KEY(_.+)?)$/;

/** The child's environment: the parent's without sluice's credentials, plus the tunnel's endpoints. */
export function childEnv(
  parent: NodeJS.ProcessEnv,
  tunnel: { localUrl?: string; openAiBaseUrl?: string; localToken: string | null; sessionId: string; connectionType?: string },
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(parent)) if (!SECRET_ENV.test(k)) env[k] = v;
  env.SLUICE_URL = tunnel.localUrl;
  env.SLUICE_SESSION_ID = tunnel.sessionId;
  if (tunnel.openAiBaseUrl) env.OPENAI_BASE_URL = tunnel.openAiBaseUrl;
  // What a gRPC client dials (host:port, insecure local credentials): the form grpc-js, grpcio and grpcurl take.
  if (tunnel.connectionType === 'grpc' && tunnel.localUrl) env.SLUICE_GRPC_TARGET = tunnel.localUrl;
  if (tunnel.localToken) {
    // The OpenAI SDKs send their api key as a bearer token: exactly what the local port requires.
    env.OPENAI_API_KEY = tunnel.localToken;
    env.SLUICE_LOCAL_TOKEN = tunnel.localToken;
  }
  return env;
}

export const registerRun: RegisterCommand = (program, ctx) => {
  program
    .command('run')
    .summary('run a command with a tunnel to a connection')
    .description(
      'Open a tunnel to the connection NAME on an ephemeral local port, run COMMAND with SLUICE_URL set to ' +
        'it (and, for http connections, OPENAI_BASE_URL to its /v1 base and OPENAI_API_KEY and SLUICE_LOCAL_TOKEN ' +
        'to the local token every request must carry: the gateway holds the real credential; for grpc connections ' +
        'SLUICE_GRPC_TARGET to the host:port a gRPC client dials with insecure local credentials), forward signals ' +
        'to it, close the tunnel when it ends and exit with its exit code. COMMAND does not see SLUICE_TOKEN, ' +
        'SLUICE_CLIENT_SECRET or SLUICE_MASTER_KEY*. For CI jobs and notebook launchers.',
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
      for (const warning of tunnel.warnings) ctx.out.stderr.write(`sluice: warning: ${warning}\n`);
      const env = childEnv(ctx.env, { ...tunnel, sessionId: tunnel.hello.session_id, connectionType: tunnel.hello.connection.type });
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
